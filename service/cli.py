"""The `lxmert` command (the console script): pipelines.cli's ask, regions, train and evaluate, and `lxmert serve`,
which answers questions over HTTP and serves the web page.

`--help` imports neither torch nor the web framework; `serve` checks what is cheap (its settings, the store, the
port) before it loads the models, then runs uvicorn until SIGTERM (drained: service/server.py) or Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Sequence
from dataclasses import fields

from pipelines.cli import CommandError
from pipelines.cli import main as pipelines_main

from .config import DEFAULT_DETECTOR, DEFAULT_VQA_MODEL, ServeConfig

PROG = "lxmert serve"
API_KEY_VARIABLE = "LXMERT_API_KEY"
EXAMPLES = f"""\
examples:
  lxmert serve                                   # http://127.0.0.1:8000: the page at /, the API at /docs
  lxmert serve --device cuda --max-batch-size 16 --max-wait-ms 10
  lxmert serve --gqa-model unc-nlp/lxmert-gqa-uncased --match-model unc-nlp/lxmert-base-uncased
  {API_KEY_VARIABLE}=secret lxmert serve --host 0.0.0.0   # clients send Authorization: Bearer secret
  lxmert serve --store val2014.h5                # requests may name an image id of the store
  curl -F image=@cat.jpg -F question="What color is the cat?" http://127.0.0.1:8000/v1/vqa

SIGTERM drains: requests in flight finish, new ones get 503, then the server exits.
"""


def add_serve_parser(commands) -> argparse.ArgumentParser:
    """The `serve` subcommand on an argparse subparsers object; it runs `run_serve`."""
    defaults = ServeConfig()
    serve = commands.add_parser(
        "serve",
        help="answer questions over HTTP, with a web page",
        description="Serve LXMERT over HTTP: POST /v1/vqa (and /v1/gqa, /v1/match, /v1/regions), the web page "
        "at /, OpenAPI docs at /docs, Prometheus metrics at /metrics. Concurrent requests are batched on the device.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    models = serve.add_argument_group("models")
    models.add_argument("--model", help=f"LXMERT VQA checkpoint: hub id or local folder (default {DEFAULT_VQA_MODEL})")
    models.add_argument("--gqa-model", metavar="MODEL", help="also serve /v1/gqa with this GQA checkpoint")
    models.add_argument(
        "--match-model",
        metavar="MODEL",
        help="also serve /v1/match with this pretraining checkpoint (e.g. unc-nlp/lxmert-base-uncased)",
    )
    models.add_argument(
        "--detector", help=f"Faster R-CNN checkpoint: hub id or local folder (default {DEFAULT_DETECTOR})"
    )
    models.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    models.add_argument(
        "--num-boxes",
        default=defaults.num_boxes,
        metavar="N|MIN-MAX",
        help=f"regions per image: a count or a range like 10-100 (default {defaults.num_boxes})",
    )
    address = serve.add_argument_group("address and access")
    address.add_argument("--host", default=defaults.host, help=f"interface to listen on (default {defaults.host})")
    address.add_argument("--port", type=int, default=defaults.port, help=f"(default {defaults.port})")
    address.add_argument(
        "--api-key",
        metavar="KEY",
        help=f"require this key (Authorization: Bearer KEY or X-API-Key: KEY); default: ${API_KEY_VARIABLE}, else none",
    )
    address.add_argument("--allow-network", action="store_true", help="let requests give an image_url to download")
    address.add_argument("--store", metavar="STORE.h5", help="a feature store whose image ids requests may name")
    limits = serve.add_argument_group("batching and limits")
    _number(limits, "--max-batch-size", int, defaults, "images per detector pass and pairs per LXMERT pass")
    _number(limits, "--max-wait-ms", float, defaults, "how long a batch waits to fill")
    _number(limits, "--cache-size", int, defaults, "images whose regions are kept; 0: none")
    _number(limits, "--max-upload-mb", float, defaults, "largest image file, in MiB")
    _number(limits, "--max-image-pixels", int, defaults, "largest image, in pixels (decompression-bomb guard)")
    _number(limits, "--max-questions", int, defaults, "questions (or texts) per request")
    _number(limits, "--max-question-chars", int, defaults, "characters per question")
    _number(limits, "--request-timeout", float, defaults, "seconds before a request is answered 504")
    _number(limits, "--queue-size", int, defaults, "requests waiting for the device before new ones get 503")
    serve.set_defaults(run=run_serve)
    return serve


def config_from_args(args: argparse.Namespace) -> ServeConfig:
    """The ServeConfig of parsed `serve` arguments (the API key from $LXMERT_API_KEY when not given), checked."""
    values = {field.name: getattr(args, field.name) for field in fields(ServeConfig) if hasattr(args, field.name)}
    if values.get("api_key") is None:
        values["api_key"] = os.environ.get(API_KEY_VARIABLE) or None
    return ServeConfig(**values).check()


def run_serve(args: argparse.Namespace) -> int:
    """Run `lxmert serve` on parsed arguments; the exit status (0 after a drained SIGTERM)."""
    try:
        config = config_from_args(args)
        check_store(config.store)
        check_port(config.host, config.port)
        # After the cheap checks: torch, the models and the web framework take seconds to import.
        try:
            from .app import create_app
            from .models import load_models
            from .server import serve
        except ImportError as error:
            raise CommandError(
                f"lxmert serve needs the serve extra: pip install 'lxmert[serve]' ({error.name} is missing)"
            ) from None
        models = load_models(config)
    except (CommandError, OSError, ValueError, TypeError, RuntimeError) as error:  # RuntimeError: out of GPU memory
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    app = create_app(config, models=models)
    print(f"{PROG}: http://{_url_host(config.host)}:{config.port}/ (API docs at /docs)", file=sys.stderr)
    return 0 if serve(app, config.host, config.port, config.request_timeout) else 1


def check_store(store: str | None) -> None:
    """CommandError unless --store (when given) is an existing file."""
    if store is None:
        return
    if not os.path.exists(store):
        raise CommandError(f"--store {store!r} does not exist")
    if not os.path.isfile(store):
        raise CommandError(f"--store {store!r} is not a file")


def check_port(host: str, port: int) -> None:
    """CommandError when the address cannot be bound (checked before the models load, which takes a while)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise CommandError(f"--host {host!r}: {error.strerror}") from None
    family, kind, protocol, _, address = infos[0]
    with socket.socket(family, kind, protocol) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as error:
            raise CommandError(f"cannot listen on {host}:{port}: {error.strerror} (choose another --port)") from None


def main(argv: Sequence[str] | None = None) -> int:
    """The `lxmert` entry point: ask, regions, train, evaluate (pipelines.cli) and serve."""
    return pipelines_main(argv, extra_commands=(add_serve_parser,))


def _number(group, flag: str, kind: type, defaults: ServeConfig, help_text: str) -> None:
    default = getattr(defaults, flag[2:].replace("-", "_"))
    group.add_argument(
        flag, type=kind, default=default, metavar=kind.__name__.upper(), help=f"{help_text} (default {default})"
    )


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


if __name__ == "__main__":
    sys.exit(main())
