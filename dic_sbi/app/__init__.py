"""The graphical app (``dic-sbi app``): everything :func:`~dic_sbi.inference.infer` does, by pointing and clicking,
in the browser, on this machine.

    dic-sbi app                  # serves http://127.0.0.1:5006/ and opens the browser
    from dic_sbi.app import create_app; create_app()   # the same page inside a Jupyter notebook

Built on Panel (the ``app`` extra: ``pip install "dic-sbi[app]"``). The page only calls the package's API:
:mod:`~dic_sbi.app.session` holds a session's state and calls, :mod:`~dic_sbi.app.jobs` runs long work in a
thread that a cancel stops, :mod:`~dic_sbi.app.layout` is the page.
"""

from __future__ import annotations

from typing import Any

from ..errors import DicSbiError

__all__ = ["create_app", "serve", "require_panel", "DEFAULT_PORT"]

#: Panel's usual port.
DEFAULT_PORT = 5006
#: Largest upload (MB) the page accepts (Bokeh's default is 20 MB, less than many ABF files); larger recordings
#: are read by path.
UPLOAD_LIMIT_MB = 1024


def require_panel() -> None:
    """Raise a :class:`~dic_sbi.errors.DicSbiError` that names the extra to install when Panel is missing."""
    try:
        import panel  # noqa: F401
    except ImportError:
        raise DicSbiError('the app needs Panel, which is not installed: pip install "dic-sbi[app]"') from None


def create_app(session: Any = None) -> Any:
    """The app's page (a Panel object) for one session; in a notebook, display it (``create_app()``)."""
    require_panel()
    from .layout import create_app as _create

    return _create(session)


def serve(port: int = DEFAULT_PORT, *, address: str = "127.0.0.1", open_browser: bool = True,
          on_ready: Any = None) -> None:  # fmt: skip
    """Serve the app until interrupted (Ctrl+C), on ``address:port`` (this machine only by default).

    Parameters
    ----------
    port, address
        Where to listen; another ``address`` (e.g. ``0.0.0.0``) makes the app reachable from other machines.
    open_browser
        Open the page in the default browser once the server listens.
    on_ready
        Called with the page's URL once the server listens (the command line prints it).
    """
    require_panel()
    import matplotlib

    matplotlib.use("Agg")  # figures become PNG pictures for the page; no window
    import panel as pn

    from .jobs import warm_up
    from .layout import create_app as _create
    from .session import DEFAULT_MODEL

    host = "127.0.0.1" if address in ("0.0.0.0", "::", "") else address
    url = f"http://{host}:{port}/"
    origins = [f"{h}:{port}" for h in {host, "localhost", "127.0.0.1", address}]
    server = pn.serve({"/": _create}, port=port, address=address, show=False, start=False, title="dic-sbi",
                      websocket_origin=origins, threaded=False, print_url=False,
                      websocket_max_message_size=UPLOAD_LIMIT_MB * 2**20)  # fmt: skip
    server.start()
    warm = warm_up(first=DEFAULT_MODEL)  # kernels, torch and the posteriors load while the user picks a recording
    if on_ready is not None:
        on_ready(url)
    if open_browser:
        import webbrowser

        server.io_loop.add_callback(lambda: webbrowser.open(url))
    try:
        server.io_loop.start()
    except KeyboardInterrupt:
        pass
    finally:
        warm.stop()
        server.stop()
