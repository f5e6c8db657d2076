"""Drives a real MCP session with the Python SDK client, for the sentinel-mcp tests.

usage: client_driver.py MODE ELICIT STEPS_JSON -- COMMAND ARGS...
       client_driver.py MODE ELICIT STEPS_JSON -- http://HOST:PORT/mcp

MODE is `legacy` (initialize handshake, 2025-11-25) or a modern revision such
as `2026-07-28`; ELICIT is `none` (no elicitation capability), `accept` or
`decline`; STEPS_JSON is a list of {"op": "list"} / {"op": "call", "tool": T,
"args": {...}}. Prints one JSON object: the negotiated protocol version and
one result per step (tools/list names, or the call result as the SDK parsed
it, or the error the SDK raised).
"""

import asyncio
import json
import os
import sys

import mcp_types as types
from mcp import Client, StdioServerParameters


async def main() -> None:
    mode, elicit, steps = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    sep = sys.argv.index("--")
    command, args = sys.argv[sep + 1], sys.argv[sep + 2 :]
    elicited = []

    async def on_elicit(context, params):
        elicited.append(params.message)
        if elicit == "accept":
            return types.ElicitResult(action="accept", content={"approve": True})
        return types.ElicitResult(action="decline")

    kwargs = {"mode": mode}
    if elicit != "none":
        kwargs["elicitation_callback"] = on_elicit
    out = {"steps": []}
    if command.startswith("http://"):
        params = command  # Streamable HTTP
    else:
        # The whole environment, so the proxy's server sees the test's variables.
        params = StdioServerParameters(command=command, args=args, env=dict(os.environ))
    async with Client(params, **kwargs) as client:
        out["protocol_version"] = client.protocol_version
        for step in steps:
            try:
                if step["op"] == "list":
                    tools = await client.list_tools()
                    out["steps"].append({"tools": [t.name for t in tools.tools]})
                else:
                    result = await client.call_tool(step["tool"], step.get("args", {}))
                    out["steps"].append(
                        {
                            "is_error": bool(result.is_error),
                            "text": "".join(getattr(c, "text", "") for c in result.content),
                        }
                    )
            except Exception as exc:  # noqa: BLE001 - the test reads it
                out["steps"].append({"exception": f"{type(exc).__name__}: {exc}"})
    out["elicited"] = elicited
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
