"""The file pipeline: upload over HTTP -> object created event -> validate the format ->
resize the image -> update a table -> notify. Each step is its own function, joined by
Squall's durable events, so a crash between steps loses nothing and a step can be
retried alone. Run it with `squall dev examples/files/app.py` (needs Pillow:
`pip install 'squall[examples]'`) and try:

    curl -s -XPOST localhost:8080/files/cat.png --data-binary @cat.png -H 'content-type: image/png'
    curl -s localhost:8080/files/cat.png                 # status: uploaded -> ready
    curl -s localhost:8080/files/cat.png/thumbnail -o thumb.png
    squall storage examples/files/app.py                 # bytes per bucket and tier

    upload (HTTP)   puts incoming/<name> into the "uploads" bucket
    validate        on_object(incoming/): is it really a JPEG, PNG, GIF or WebP?
    resize          invoked asynchronously by validate: a thumbnail under thumbnails/
    notify          on_change("files"): a file became ready -> log line + bus event
"""

from __future__ import annotations

import io
import logging

from PIL import Image, UnidentifiedImageError

from squall import App, BadRequest, NotFound, Response

app = App("files")
uploads = app.bucket("uploads", lifecycle=[
    {"prefix": "incoming/", "archive_after_days": 30, "expire_after_days": 365}])
files = app.table("files", key="name")
log = logging.getLogger("files")
log.setLevel(logging.INFO)

FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}
THUMBNAIL = (128, 128)
MAX_PIXELS = 40_000_000  # refuse decompression bombs before decoding them


@app.http("POST", "/files/{name}")
def upload(request):
    """Step 1: store the bytes; everything after this is driven by events."""
    name = request.path_params["name"]
    if not request.body:
        raise BadRequest("send the file as the request body")
    info = uploads.put(f"incoming/{name}", request.body,
                       content_type=request.headers.get("content-type"),
                       metadata={"original-name": name})
    files.put({"name": name, "status": "uploaded", "size": info.size, "etag": info.etag})
    return Response(202, {"name": name, "etag": info.etag, "status": "uploaded"},
                    headers={"location": f"/files/{name}"})


@app.on_object("uploads", prefix="incoming/", events=["created"])
def validate(event, ctx):
    """Step 2: accept only real images (by their bytes, not their name)."""
    name = event.key.removeprefix("incoming/")
    data = uploads.get(event.key).body
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt, (width, height) = img.format, img.size
            if width * height > MAX_PIXELS:
                raise ValueError(f"{width}x{height} is too many pixels")
            img.verify()
    except (UnidentifiedImageError, ValueError, OSError) as exc:
        files.update(name, set={"status": "rejected", "reason": str(exc) or "not an image"})
        log.warning("rejected %s: %s", name, exc)
        return
    if fmt not in FORMATS:
        files.update(name, set={"status": "rejected", "reason": f"{fmt} is not accepted"})
        return
    files.update(name, set={"status": "validated", "format": fmt, "width": width,
                            "height": height})
    app.invoke_async("resize", {"key": event.key, "name": name, "version": event.version})


@app.function(timeout_s=30, memory_mb=512)
def resize(job, ctx):
    """Step 3: a thumbnail, stored beside the original; then the table says ready."""
    original = uploads.get(job["key"])
    if original.info.version != job["version"]:
        return {"skipped": "replaced by a newer upload"}  # its own event resizes that one
    with Image.open(io.BytesIO(original.body)) as img:
        img.thumbnail(THUMBNAIL)
        out = io.BytesIO()
        img.convert("RGBA" if img.mode in ("P", "LA", "RGBA") else "RGB").save(out, "PNG")
    thumb = uploads.put(f"thumbnails/{job['name']}.png", out.getvalue(),
                        content_type="image/png")
    item = files.update(job["name"], set={"status": "ready", "thumbnail": thumb.key,
                                          "thumbnail_size": list(img.size)})
    return {"thumbnail": thumb.key, "version": item.version}


@app.on_change("files", events=["modify"])
def notify(changes, ctx):
    """Step 4: tell the world, once per file that became ready."""
    for change in changes:
        if change.new.get("status") == "ready" and change.old.get("status") != "ready":
            log.info("file ready: %s (thumbnail %s)", change.new["name"],
                     change.new["thumbnail"])
            app.publish("files", "FileReady", {"name": change.new["name"],
                                               "thumbnail": change.new["thumbnail"]})


@app.http("GET", "/files/{name}")
def status(request):
    item = files.get(request.path_params["name"])
    if item is None:
        raise NotFound(f"no file named {request.path_params['name']!r}")
    return dict(item)


@app.http("GET", "/files/{name}/thumbnail")
def thumbnail(request):
    item = files.get(request.path_params["name"])
    if item is None or item.get("status") != "ready":
        raise NotFound("no thumbnail (yet)")
    obj = uploads.get(item["thumbnail"])
    return Response(200, obj.body, content_type=obj.content_type)
