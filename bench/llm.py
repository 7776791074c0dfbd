"""Generation and embedding benchmark: the server against the same model called in-process.

``make bench-llm`` (or ``python bench/llm.py``) in one run:

1. builds a Llama-architecture model (random weights, hidden 512, 8 layers, a real BPE tokenizer;
   about 25 M parameters) with the test builders, and uses the real all-MiniLM-L6-v2;
2. in-process: greedy generation with the runtime's own prefill/decode calls, one sequence (tokens/s,
   time to first token) and eight decoded together (aggregate tokens/s); embeddings of single
   sentences and of batches of 32;
3. starts ``modelserver serve`` for each model on 127.0.0.1 and drives it over HTTP with streamed
   ``/v1/completions`` requests at concurrency 1 and 8 (tokens/s from the ``usage`` of each answer,
   time to first token from the first SSE event), the same with a JSON schema constraint
   (``response_format``: every token masked by the grammar), and ``/v1/embeddings`` at
   concurrency 1 and 8;
4. prints a table with the ratios to in-process and writes it to ``bench/results/llm.md``.

The load generator is threads with ``http.client`` in this process, on the same 2 cores as the
server: the figures include its cost. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from bench.run import Server, free_port, loadavg, log, rss_mb  # noqa: E402
from tests import hf_models  # noqa: E402

PROMPT = "Once upon a time, in a small town by the river, there lived"
SENTENCE = "A man is playing a guitar on the street corner."
LLAMA_SIZE = {"hidden": 512, "layers": 8, "heads": 8, "kv_heads": 4, "intermediate": 1408}
#: free/constrained round pairs per concurrency
PAIRS = 3
#: the constrained case: a record whose last field is free text, so completions run their length
SCHEMA = {"type": "object", "properties": {"title": {"type": "string", "maxLength": 24},
                                           "year": {"type": "integer", "minimum": 1900, "maximum": 2100},
                                           "genre": {"enum": ["drama", "comedy", "documentary"]},
                                           "story": {"type": "string"}},
          "required": ["title", "year", "genre", "story"], "additionalProperties": False}


@dataclass
class Row:
    case: str
    what: str
    value: float
    unit: str
    reference: float | None = None
    note: str = ""

    @property
    def ratio(self) -> str:
        return f"{self.value / self.reference:.2f}x" if self.reference else ""


# -- in-process -------------------------------------------------------------------------------------
def inprocess_generation(path: Path, tokens: int, rows: int) -> tuple[float, float]:
    """(aggregate tokens/s, time to first token in s) of greedy generation, ``rows`` sequences together."""
    from modelserver.runtime.hf.architectures import load_causal_lm
    from modelserver.runtime.hf.text import TextCodec

    codec = TextCodec(path)
    model = load_causal_lm(path, n_slots=8, max_len=None)
    ids = np.array(codec.encode(PROMPT), np.int32)
    for _ in range(2):  # warm the graphs at these shapes
        model.prefill(ids, 0)
        model.decode(np.zeros(rows, np.int32), np.full(rows, len(ids), np.int32), np.arange(rows, dtype=np.int32))
    best = (0.0, 0.0)
    for _ in range(3):
        t0 = time.perf_counter()
        last = [int(np.argmax(model.prefill(ids, s))) for s in range(rows)]
        ttft = (time.perf_counter() - t0) / rows
        slots = np.arange(rows, dtype=np.int32)
        for step in range(tokens - 1):
            logits = model.decode(np.array(last, np.int32), np.full(rows, len(ids) + step, np.int32), slots)
            last = [int(np.argmax(row)) for row in logits]
        rate = rows * tokens / (time.perf_counter() - t0)
        if rate > best[0]:
            best = (rate, ttft)
    return best


def inprocess_embeddings(path: Path, batch: int, seconds: float) -> float:
    from modelserver.runtime.hf.servable import Embedder

    emb = Embedder("minilm", 1, path)
    texts = np.array([SENTENCE.encode()] * batch, dtype=object)
    emb.predict("embed", {"text": texts})
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        emb.predict("embed", {"text": texts})
        n += batch
    return n / (time.perf_counter() - t0)


# -- over HTTP ------------------------------------------------------------------------------------------
def stream_completion(port: int, tokens: int, schema: dict | None = None) -> tuple[int, float, float]:
    """(completion tokens, time to first event, total time) of one streamed completion (``schema``:
    constrained to JSON fitting it)."""
    request = {"prompt": PROMPT, "max_tokens": tokens, "temperature": 0, "stream": True,
               "stream_options": {"include_usage": True}}
    if schema is not None:
        request["response_format"] = {"type": "json_schema", "json_schema": {"name": "record", "schema": schema}}
    body = json.dumps(request)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    t0 = time.perf_counter()
    conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    first, used = 0.0, 0
    for line in resp:
        if not line.startswith(b"data: "):
            continue
        if not first:
            first = time.perf_counter() - t0
        payload = line[6:].strip()
        if payload == b"[DONE]":
            break
        chunk = json.loads(payload)
        if chunk.get("usage"):
            used = chunk["usage"]["completion_tokens"]
    total = time.perf_counter() - t0
    conn.close()
    return used, first, total


def drive(fn, conns: int, seconds: float) -> list:  # type: ignore[no-untyped-def]
    results: list = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker() -> None:
        while time.monotonic() < stop:
            r = fn()
            with lock:
                results.append(r)

    threads = [threading.Thread(target=worker) for _ in range(conns)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [time.perf_counter() - t0, results]


def http_generation(port: int, tokens: int, conns: int, seconds: float, schema: dict | None = None
                    ) -> tuple[float, float, float]:
    """(tokens/s, time to first token p50, mean tokens per completion)."""
    elapsed, results = drive(lambda: stream_completion(port, tokens, schema), conns, seconds)
    produced = sum(r[0] for r in results)
    return produced / elapsed, statistics.median(r[1] for r in results), produced / max(1, len(results))


def embed_once(port: int, batch: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    body = json.dumps({"input": [SENTENCE] * batch, "encoding_format": "base64"})
    conn.request("POST", "/v1/embeddings", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    if resp.status != 200:
        raise RuntimeError(data[:200])
    return batch


def http_embeddings(port: int, batch: int, conns: int, seconds: float) -> float:
    elapsed, results = drive(lambda: embed_once(port, batch), conns, seconds)
    return sum(results) / elapsed


def schema_row(conns: int, pairs: list[tuple[float, float, float]]) -> Row:
    """Constrained tokens/s against free tokens/s: medians of the pairs, and the pairs' ratios."""
    ratios = sorted(held / free for free, held, _ in pairs)
    return Row(f"JSON schema, concurrency {conns}", "tokens/s (reference: free, paired rounds)",
               statistics.median(p[1] for p in pairs), "tok/s", statistics.median(p[0] for p in pairs),
               f"pair ratios {', '.join(f'{r:.2f}' for r in ratios)} (median {statistics.median(ratios):.2f}); "
               f"{statistics.mean(p[2] for p in pairs):.0f} tokens a completion")


def serve(label: str, path: Path, logs: Path, *args: str) -> Server:
    port = free_port()
    argv = [str(REPO / ".venv" / "bin" / "modelserver"), "serve", str(path), "--name", label, "--port", str(port),
            "--protocol", "openai", "--log-level", "warning", "--grpc-port", "0", *args]
    server = Server(label, argv, port, "/v2/health/ready", cwd=REPO)
    server.start(logs, timeout=600)
    return server


def report(rows: list[Row], command: str, started: str, notes: list[str]) -> str:
    lines = [
        "# Generation and embedding benchmark", "",
        f"Command: `{command}`, started {started} UTC on this machine ({os.cpu_count()} CPUs).", "",
        "| case | measure | value | reference (in-process unless said) | ratio | note |", "|---|---|---|---|---|---|",
    ]
    for r in rows:
        ref = f"{r.reference:,.1f}" if r.reference else ""
        lines.append(f"| {r.case} | {r.what} | {r.value:,.1f} {r.unit} | {ref} | {r.ratio} | {r.note} |")
    lines += ["", *notes, ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=64, help="tokens per completion")
    ap.add_argument("--seconds", type=float, default=15, help="seconds per HTTP case")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "llm.md")
    args = ap.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    command = "make bench-llm" if os.environ.get("BENCH_VIA_MAKE") else "python bench/llm.py " + " ".join(sys.argv[1:])
    work = Path(tempfile.mkdtemp(prefix="bench-llm-"))
    logs = work / "logs"
    logs.mkdir()
    llama = hf_models.make_llama(work / "llama", **LLAMA_SIZE)
    minilm = hf_models.minilm_dir()
    rows: list[Row] = []
    notes: list[str] = []

    log("in-process generation")
    ip1, ip_ttft = inprocess_generation(llama, args.tokens, 1)
    ip8, _ = inprocess_generation(llama, args.tokens, 8)
    # The HTTP client and the server's IO loop share these 2 cores with the model: the same
    # in-process run with one core kept busy by another process shows what that alone costs.
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        ip1_busy, _ = inprocess_generation(llama, args.tokens, 1)
    finally:
        burner.kill()
    log("in-process embeddings")
    ipe1 = inprocess_embeddings(minilm, 1, 5)
    ipe32 = inprocess_embeddings(minilm, 32, 5)

    server = serve("llama", llama, logs, "--max-sequences", "8")
    try:
        stream_completion(server.port, 4)
        log(f"HTTP generation, 1 connection (load {loadavg()})")
        h1, h1_ttft, _ = http_generation(server.port, args.tokens, 1, args.seconds)
        log(f"HTTP generation, 8 connections (load {loadavg()})")
        h8, h8_ttft, _ = http_generation(server.port, args.tokens, 8, args.seconds)
        stream_completion(server.port, 4, SCHEMA)
        # free and constrained in alternating short rounds: the ratio of each pair, not of two moments
        paired: dict[int, list[tuple[float, float, float]]] = {1: [], 8: []}
        for conns in (1, 8):
            log(f"HTTP generation, free and under a JSON schema in {PAIRS} pairs, {conns} connections "
                f"(load {loadavg()})")
            for _ in range(PAIRS):
                free, _, _ = http_generation(server.port, args.tokens, conns, args.seconds / 2)
                held, _, length = http_generation(server.port, args.tokens, conns, args.seconds / 2, SCHEMA)
                paired[conns].append((free, held, length))
        rss = rss_mb(server.proc.pid) if server.proc else 0.0
    finally:
        server.stop()
    rows += [
        Row("generate, concurrency 1", "tokens/s", h1, "tok/s", ip1, "target >= 0.90x"),
        Row("generate, concurrency 1", "tokens/s vs in-process with one core busy", h1, "tok/s", ip1_busy,
            "what co-location alone costs"),
        Row("generate, concurrency 1", "time to first token p50", h1_ttft * 1000, "ms", ip_ttft * 1000),
        Row("generate, concurrency 8", "tokens/s (all streams)", h8, "tok/s", ip8,
            f"{h8 / h1:.2f}x concurrency 1 (target > 1x)"),
        Row("generate, concurrency 8", "time to first token p50", h8_ttft * 1000, "ms", None),
        *(schema_row(conns, pairs) for conns, pairs in paired.items()),
    ]
    notes.append(f"Generation server RSS after the runs: {rss:.0f} MB. In-process concurrency 8 decodes 8 sequences "
                 "in one call per step, the upper bound for batched serving of this model.")

    server = serve("minilm", minilm, logs)
    try:
        embed_once(server.port, 1)
        log(f"HTTP embeddings (load {loadavg()})")
        e1 = http_embeddings(server.port, 1, 1, args.seconds)
        e8 = http_embeddings(server.port, 1, 8, args.seconds)
        e32 = http_embeddings(server.port, 32, 1, args.seconds)
    finally:
        server.stop()
    rows += [
        Row("embed 1 sentence, concurrency 1", "embeddings/s", e1, "/s", ipe1),
        Row("embed 1 sentence, concurrency 8", "embeddings/s", e8, "/s", ipe32, "vs in-process batches of 32"),
        Row("embed 32 sentences, concurrency 1", "embeddings/s", e32, "/s", ipe32),
    ]
    notes.append(f"Model: Llama architecture {LLAMA_SIZE}, {args.tokens} tokens per completion, greedy; "
                 "all-MiniLM-L6-v2 for embeddings. Load average at the end: " + loadavg() + ".")
    text = report(rows, command, started, notes)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
