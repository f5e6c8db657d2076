"""A minimal stdio JSON-RPC peer (standard library only, so it starts fast)
for the proxy's timeout tests: `tools/call` of `slow` answers after
`arguments.seconds`; every other request is answered at once with an empty
result (`tools/list` with the two tools it has). Answers are written as they become ready, so a slow call does not
hold up later ones.
"""

import json
import sys
import threading
import time

lock = threading.Lock()


def answer(msg_id, result, delay):
    time.sleep(delay)
    with lock:
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": msg_id, "result": result}) + "\n")
        sys.stdout.flush()


for line in sys.stdin:
    msg = json.loads(line)
    if "id" not in msg or "method" not in msg:
        continue
    params = msg.get("params") or {}
    delay = 0.0
    result = {}
    if msg["method"] == "tools/list":
        result = {"tools": [
            {"name": "slow", "inputSchema": {"type": "object"}},
            {"name": "echo", "inputSchema": {"type": "object"}},
        ]}
    if msg["method"] == "tools/call":
        args = params.get("arguments") or {}
        delay = float(args.get("seconds", 0))
        result = {"content": [{"type": "text", "text": f"{params.get('name')} done"}], "isError": False}
    threading.Thread(target=answer, args=(msg["id"], result, delay), daemon=True).start()
