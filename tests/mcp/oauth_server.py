"""An OAuth-protected MCP server built with the Python SDK's auth support,
for the sentinel-mcp tests: one process is both the authorization server
(dynamic client registration, authorization code with PKCE, token endpoint;
every authorization request is approved at once, as a user would) and the
resource server (Streamable HTTP at /mcp, bearer tokens required, protected
resource metadata at /.well-known/oauth-protected-resource/mcp).

usage: oauth_server.py PORT
Every tools/call is logged to SENTINEL_TEST_CALL_LOG with the client id of
the token that made it, and every token issued to the same log (kind
"token"), so a test can tell who reached the server. SENTINEL_TEST_STATIC_TOKEN
is an access token provisioned out of band (client id "static-service"), as
an operator would give the proxy with --upstream-token-file.
"""

import json
import os
import secrets
import sys
import time

import uvicorn
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    RefreshToken,
    construct_redirect_uri,
)
from mcp.server.auth.settings import AuthSettings, ClientRegistrationOptions
from mcp.server.mcpserver import MCPServer
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken

PORT = int(sys.argv[1])
BASE = f"http://127.0.0.1:{PORT}"
CALL_LOG = os.environ.get("SENTINEL_TEST_CALL_LOG")


def log(entry: dict) -> None:
    if CALL_LOG:
        with open(CALL_LOG, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")


class AutoApprove:
    """An in-memory authorization server that approves every request."""

    def __init__(self) -> None:
        self.clients: dict[str, OAuthClientInformationFull] = {}
        self.codes: dict[str, AuthorizationCode] = {}
        self.tokens: dict[str, AccessToken] = {}

    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        return self.clients.get(client_id)

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        self.clients[client_info.client_id] = client_info

    async def authorize(self, client: OAuthClientInformationFull, params: AuthorizationParams) -> str:
        code = secrets.token_urlsafe(24)
        self.codes[code] = AuthorizationCode(
            code=code,
            scopes=params.scopes or ["mcp"],
            expires_at=time.time() + 300,
            client_id=client.client_id,
            code_challenge=params.code_challenge,
            redirect_uri=params.redirect_uri,
            redirect_uri_provided_explicitly=params.redirect_uri_provided_explicitly,
            resource=params.resource,
        )
        return construct_redirect_uri(str(params.redirect_uri), code=code, state=params.state)

    async def load_authorization_code(self, client, authorization_code: str):
        return self.codes.get(authorization_code)

    async def exchange_authorization_code(self, client, authorization_code: AuthorizationCode) -> OAuthToken:
        self.codes.pop(authorization_code.code, None)
        token = secrets.token_urlsafe(32)
        self.tokens[token] = AccessToken(
            token=token,
            client_id=client.client_id,
            scopes=authorization_code.scopes,
            expires_at=int(time.time()) + 3600,
            resource=authorization_code.resource,
        )
        log({"kind": "token", "client_id": client.client_id, "resource": authorization_code.resource})
        return OAuthToken(
            access_token=token,
            token_type="Bearer",
            expires_in=3600,
            scope=" ".join(authorization_code.scopes),
        )

    async def load_refresh_token(self, client, refresh_token: str) -> RefreshToken | None:
        return None

    async def exchange_refresh_token(self, client, refresh_token, scopes):
        raise NotImplementedError

    async def load_access_token(self, token: str) -> AccessToken | None:
        return self.tokens.get(token)

    async def revoke_token(self, token) -> None:
        self.tokens.pop(getattr(token, "token", token), None)


provider = AutoApprove()
if os.environ.get("SENTINEL_TEST_STATIC_TOKEN"):
    static = os.environ["SENTINEL_TEST_STATIC_TOKEN"]
    provider.tokens[static] = AccessToken(token=static, client_id="static-service", scopes=["mcp"])
server = MCPServer(
    "sentinel-oauth-test-server",
    auth_server_provider=provider,
    auth=AuthSettings(
        issuer_url=BASE,
        resource_server_url=f"{BASE}/mcp",
        client_registration_options=ClientRegistrationOptions(enabled=True, valid_scopes=["mcp"], default_scopes=["mcp"]),
        required_scopes=["mcp"],
        validate_token_resource=False,
    ),
)


def caller() -> str | None:
    token = get_access_token()
    return token.client_id if token else None


@server.tool(description="Echo the text back.")
def echo(text: str) -> str:
    log({"kind": "call", "tool": "echo", "args": {"text": text}, "client_id": caller()})
    return text


@server.tool(description="Delete every file under a directory.")
def delete_all(path: str) -> str:
    log({"kind": "call", "tool": "delete_all", "args": {"path": path}, "client_id": caller()})
    return f"deleted everything under {path}"


if __name__ == "__main__":
    uvicorn.run(server.streamable_http_app(host="127.0.0.1"), host="127.0.0.1", port=PORT, log_level="warning")
