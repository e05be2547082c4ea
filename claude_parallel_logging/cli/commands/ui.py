"""browse the logs in a web browser (local, read-only)"""

# Serves the viewer of ``claude_parallel_logging.ui`` (needs the ``[ui]`` extra) on 127.0.0.1
# unless another host is asked for, opens the browser unless --no-open, stops on Ctrl-C.

from __future__ import annotations

import argparse

from ...query import check_readable
from ...ui import INSTALL_HINT, missing_requirements
from ..base import EXIT_OK, CliError
from ..database import resolve_client
from ..options import non_negative_int
from ..output import Output

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")  # fmt: skip
    p.add_argument("--port", type=non_negative_int, default=8765,
                   help="port (default 8765; 0: any free port)")  # fmt: skip
    p.add_argument("--no-open", action="store_true", help="do not open a browser")


def missing_ui_message(names: tuple[str, ...] = ("starlette", "uvicorn", "jinja2")) -> str | None:
    """One line saying what to install when (part of) the ``[ui]`` extra is absent."""
    missing = missing_requirements(names)
    if not missing:
        return None
    return f"the viewer needs {', '.join(missing)}: {INSTALL_HINT}"


def handle(args: argparse.Namespace, out: Output) -> int:
    problem = missing_ui_message()
    if problem is not None:
        raise CliError(problem)
    client = resolve_client(args)
    check_readable(client)
    if args.host not in LOOPBACK:
        print(
            f"cpl ui: warning: listening on {args.host}: the logs become readable by anyone who"
            " can reach this machine on the network (there is no authentication)",
            file=out.stderr,
        )
    from ...ui.app import serve  # the web stack loads only for this command

    def announce(line: str) -> None:
        out.line(line)
        out.stdout.flush()

    try:
        serve(client, args.host, args.port, open_browser=not args.no_open, announce=announce)
    except OSError as exc:
        raise CliError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    except KeyboardInterrupt:
        pass
    print("cpl ui: stopped", file=out.stderr)
    return EXIT_OK
