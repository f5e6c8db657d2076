"""The Python SDK client with its OAuth 2.1 support, for the sentinel-mcp
tests: it connects to URL, and on a 401 discovers the protected resource
and its authorization server, registers itself, runs the authorization code
flow with PKCE (the "browser" is an HTTP GET that follows the authorization
server's redirect to the callback) and retries with the token.

usage: oauth_client.py MODE URL
Prints one JSON object: the protocol version, the tool names, the result
of echo("through oauth") and of delete_all("/"), or the exception raised.
"""

import asyncio
import json
import sys
from urllib.parse import parse_qs, urlparse

import httpx2
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken


class Memory:
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client

    async def set_client_info(self, client_info):
        self.client = client_info


async def main() -> None:
    mode, url = sys.argv[1], sys.argv[2]
    redirected: dict[str, str] = {}

    async def redirect_handler(authorization_url: str) -> None:
        # The user's browser: the authorization server approves at once
        # and redirects to the callback with the code.
        async with httpx2.AsyncClient() as browser:
            response = await browser.get(authorization_url, follow_redirects=False)
            location = response.headers["location"]
            query = parse_qs(urlparse(location).query)
            redirected["code"] = query["code"][0]
            redirected["state"] = query.get("state", [None])[0]
            redirected["iss"] = query.get("iss", [None])[0]

    async def callback_handler() -> AuthorizationCodeResult:
        return AuthorizationCodeResult(code=redirected["code"], state=redirected["state"], iss=redirected["iss"])

    provider = OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(
            client_name="sentinel-oauth-test-client",
            redirect_uris=["http://127.0.0.1:9/callback"],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            scope="mcp",
        ),
        storage=Memory(),
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
    )
    out: dict = {}
    try:
        async with httpx2.AsyncClient(auth=provider, timeout=30) as http:
            async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
                out["protocol_version"] = client.protocol_version
                tools = await client.list_tools()
                out["tools"] = [t.name for t in tools.tools]
                for tool, args in [("echo", {"text": "through oauth"}), ("delete_all", {"path": "/"})]:
                    result = await client.call_tool(tool, args)
                    out[tool] = {
                        "is_error": bool(result.is_error),
                        "text": "".join(getattr(c, "text", "") for c in result.content),
                    }
    except Exception as exc:  # noqa: BLE001 - the test reads it
        while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
            exc = exc.exceptions[0]
        out["exception"] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
