"""``GET /label``: the labelling page for the help desk's agents (serving/pages/). One ticket of
the label queue at a time with the model's suggestion and the words that pushed it (from
/explain), categories as buttons with keyboard shortcuts, undo of the last label. Labels go
through ``POST /feedback`` and its rules; the page holds no secret: the agent types the label
key once per browser tab and the page keeps it in that tab's ``sessionStorage``, so it never
appears in the HTML, a URL, a cookie or a log line. Nothing is fetched from outside the service
(the Content-Security-Policy says so to the browser too)."""

from __future__ import annotations

from importlib import resources

from litestar import MediaType, Response, get

#: Only this origin's script, style and API; no frames, no forms posting elsewhere.
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def _page(name: str) -> str:
    return (resources.files("serving") / "pages" / name).read_text(encoding="utf-8")


HTML, SCRIPT, STYLE = _page("label.html"), _page("label.js"), _page("label.css")


@get("/label", media_type=MediaType.HTML, summary="Labelling page for agents (HTML)")
async def label_page() -> Response[str]:
    return Response(HTML, media_type=MediaType.HTML, headers=HEADERS)


@get("/label/app.js", include_in_schema=False)
async def label_script() -> Response[str]:
    return Response(SCRIPT, media_type="text/javascript; charset=utf-8", headers=HEADERS)


@get("/label/app.css", include_in_schema=False)
async def label_style() -> Response[str]:
    return Response(STYLE, media_type="text/css; charset=utf-8", headers=HEADERS)


HANDLERS = [label_page, label_script, label_style]
