"""Drives the real OpenAI and Anthropic Python SDKs against a base URL (the
Sentinel LLM proxy) and prints one JSON line: what the SDK returned, or the
error it raised.

    python sdk_client.py BASE_URL RELEASE_FILE < scenarios.jsonl

Each input line is {"scenario", "key", "prompt", "base"} (base optional); one
output line answers each (importing both SDKs is slow, so one process runs
them all). Streamed scenarios create RELEASE_FILE when the first piece arrives (see
upstream_standin.py) and report `first_before_release`: the first piece
reached the client before the upstream finished the stream.
"""

import json
import os
import sys

import anthropic
import openai

base, release = sys.argv[1:3]


def released():
    existed = os.path.exists(release)
    open(release, "w").close()
    return not existed


def run(base, scenario, key, prompt):
    out = {"scenario": scenario}
    try:
        if scenario.startswith("openai"):
            client = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=30)
            model = "echo-key" if scenario == "openai-echo-key" else ("inject" if scenario == "openai-inject" else "gpt-test")
            if scenario in ("openai-chat", "openai-echo-key", "openai-inject"):
                r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}])
                out["text"] = r.choices[0].message.content
            elif scenario == "openai-chat-stream":
                pieces = []
                stream = client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}], stream=True)
                for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        if not pieces:
                            out["first_before_release"] = released()
                        pieces.append(chunk.choices[0].delta.content)
                out["text"] = "".join(pieces)
                out["pieces"] = len(pieces)
            elif scenario == "openai-responses":
                r = client.responses.create(model=model, input=prompt)
                out["text"] = r.output_text
            elif scenario == "openai-responses-stream":
                pieces = []
                with client.responses.stream(model=model, input=prompt) as stream:
                    for event in stream:
                        if event.type == "response.output_text.delta":
                            if not pieces:
                                out["first_before_release"] = released()
                            pieces.append(event.delta)
                out["text"] = "".join(pieces)
                out["pieces"] = len(pieces)
            elif scenario == "openai-models":
                out["text"] = ",".join(m.id for m in client.models.list())
        else:
            client = anthropic.Anthropic(base_url=base, api_key=key, max_retries=0, timeout=30)
            if scenario == "anthropic-messages":
                r = client.messages.create(model="claude-test", max_tokens=64, messages=[{"role": "user", "content": prompt}])
                out["text"] = "".join(b.text for b in r.content if b.type == "text")
            elif scenario == "anthropic-stream":
                pieces = []
                with client.messages.stream(model="claude-test", max_tokens=64, messages=[{"role": "user", "content": prompt}]) as stream:
                    for text in stream.text_stream:
                        if not pieces:
                            out["first_before_release"] = released()
                        pieces.append(text)
                out["text"] = "".join(pieces)
                out["pieces"] = len(pieces)
        out["ok"] = True
    except (openai.APIStatusError, anthropic.APIStatusError) as e:
        out["ok"] = False
        out["error"] = type(e).__name__
        out["status"] = e.status_code
        out["message"] = str(e)
    except Exception as e:  # noqa: BLE001 - reported to the test as-is
        out["ok"] = False
        out["error"] = type(e).__name__
        out["message"] = str(e)
    return out


for line in sys.stdin:
    if line.strip():
        ask = json.loads(line)
        print(json.dumps(run(ask.get("base", base), ask["scenario"], ask["key"], ask.get("prompt", "Say hello"))), flush=True)
