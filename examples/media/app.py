"""Media processing: fan-out/fan-in.

An upload lands in object storage; its "object created" event starts a workflow that runs
four independent jobs *in parallel* and then one step that needs all their results:

                       +-> thumbnail         (128x128 PNG)
    upload -> object --+-> transcode         (JPEG, WebP, PNG renditions)
    (HTTP)    created  +-> extract_metadata  (format, size, mode, EXIF)
                       +-> check_content     (size limits, blank images)
                                 |
                                 v  fan-in
                              combine  -> "media" table, and the user is notified

Each job is an ordinary function, so each has its own timeout, memory and retries, and a
crash loses nothing: the workflow records every finished job and resumes from there.

Run it with `squall dev examples/media` (needs Pillow: `pip install 'squall[examples]'`):

    curl -s -XPOST 'localhost:8080/media/cat.png?user=ada' --data-binary @cat.png
    curl -s localhost:8080/media/cat.png                  # processing -> ready | rejected
    curl -s localhost:8080/media/cat.png/webp -o cat.webp
    curl -s localhost:8080/users/ada/notifications
"""

from __future__ import annotations

import io
import time

from PIL import ExifTags, Image, ImageStat, UnidentifiedImageError

from squall import App, BadRequest, NotFound, Response

app = App("media")
media = app.bucket("media")
items = app.table("media", key="name")
notifications = app.table("notifications", key="user", sort_key="at")

THUMBNAIL = (128, 128)
RENDITIONS = {"jpeg": ("JPEG", "image/jpeg"), "webp": ("WEBP", "image/webp"),
              "png": ("PNG", "image/png")}
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 40_000_000  # refuse decompression bombs before decoding them
MIN_SIDE = 16


@app.http("POST", "/media/{name}")
def upload(request):
    name, user = request.path_params["name"], request.query.get("user", "")
    if not user.isalnum():
        raise BadRequest("say who uploads: ?user=NAME (letters and digits)")
    if not request.body:
        raise BadRequest("send the image as the request body")
    if len(request.body) > MAX_UPLOAD_BYTES:
        raise BadRequest(f"the upload is {len(request.body)} bytes; the limit is "
                         f"{MAX_UPLOAD_BYTES}")
    info = media.put(f"uploads/{name}", request.body, metadata={"user": user})
    items.put({"name": name, "user": user, "status": "processing", "size": info.size})
    return Response(202, {"name": name, "status": "processing"},
                    headers={"location": f"/media/{name}"})


@app.on_object("media", prefix="uploads/", events=["created"])
def uploaded(event, ctx):
    """The trigger: one workflow per uploaded version. The execution id is derived from
    the version, so a redelivered event finds the execution started and starts nothing."""
    job = {"key": event.key, "name": event.key.removeprefix("uploads/"),
           "version": event.version, "user": event.metadata.get("user", "")}
    app.start_workflow("process_upload", job, id=f"{job['name']}-{event.version}")


@app.workflow()
def process_upload(wf, job):
    # fan-out: four jobs started together, running in parallel
    thumb, renditions, meta, check = wf.all([
        wf.call("thumbnail", job), wf.call("transcode", job),
        wf.call("extract_metadata", job), wf.call("check_content", job)])
    # fan-in: one step with every result
    return wf.step("combine", {"job": job, "thumbnail": thumb, "renditions": renditions,
                               "metadata": meta, "check": check})


def _open(job) -> Image.Image:
    img = Image.open(io.BytesIO(media.get(job["key"]).body))
    if img.width * img.height > MAX_PIXELS:
        raise ValueError(f"{img.width}x{img.height} is too many pixels")
    return img


def _save(img: Image.Image, key: str, fmt: str, content_type: str) -> dict:
    out = io.BytesIO()
    if fmt == "JPEG" and img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    img.save(out, fmt)
    info = media.put(key, out.getvalue(), content_type=content_type)
    return {"key": key, "size": info.size, "content_type": content_type}


@app.function(timeout_s=30, memory_mb=512)
def thumbnail(job):
    try:
        img = _open(job)
    except (UnidentifiedImageError, ValueError):
        return None  # check_content says why
    img.thumbnail(THUMBNAIL)
    return {**_save(img, f"thumbnails/{job['name']}.png", "PNG", "image/png"),
            "width": img.width, "height": img.height}


@app.function(timeout_s=60, memory_mb=512)
def transcode(job):
    try:
        img = _open(job)
    except (UnidentifiedImageError, ValueError):
        return {}
    img.load()
    return {ext: _save(img, f"renditions/{job['name']}.{ext}", fmt, ctype)
            for ext, (fmt, ctype) in RENDITIONS.items()}


@app.function(timeout_s=10)
def extract_metadata(job):
    try:
        img = _open(job)
    except (UnidentifiedImageError, ValueError):
        return {}
    exif = {ExifTags.TAGS.get(tag, str(tag)): str(value)
            for tag, value in img.getexif().items()}
    return {"format": img.format, "width": img.width, "height": img.height,
            "mode": img.mode, "exif": exif}


@app.function(timeout_s=10)
def check_content(job):
    """Is it an image we accept? Not a disguised file, not a bomb, not a blank square."""
    try:
        img = _open(job)
        img.load()
    except (UnidentifiedImageError, ValueError, OSError) as exc:
        return {"ok": False, "reason": str(exc) or "not an image"}
    if min(img.size) < MIN_SIDE:
        return {"ok": False, "reason": f"smaller than {MIN_SIDE}x{MIN_SIDE} pixels"}
    if max(ImageStat.Stat(img.convert("L")).stddev) < 1.0:
        return {"ok": False, "reason": "the image is blank (one colour)"}
    return {"ok": True}


@app.function()
def combine(results):
    """Fan-in: one table update with everything, one notification to the user. A rejected
    upload keeps nothing derived from it."""
    job, check = results["job"], results["check"]
    if not check["ok"]:
        for key in [r["key"] for r in results["renditions"].values()] + (
                [results["thumbnail"]["key"]] if results["thumbnail"] else []):
            media.delete(key)
        item = items.update(job["name"], set={"status": "rejected", "reason": check["reason"]})
    else:
        item = items.update(job["name"], set={
            "status": "ready", "metadata": results["metadata"],
            "thumbnail": results["thumbnail"], "renditions": results["renditions"]})
    message = (f"{job['name']} is ready" if check["ok"]
               else f"{job['name']} was rejected: {check['reason']}")
    notifications.put({"user": job["user"], "at": f"{time.time():017.6f} {job['name']}",
                       "name": job["name"], "message": message})
    app.publish("media", "MediaProcessed", {"name": job["name"], "status": item["status"]})
    return {"name": job["name"], "status": item["status"]}


@app.http("GET", "/media/{name}")
def status(request):
    item = items.get(request.path_params["name"])
    if item is None:
        raise NotFound(f"no upload named {request.path_params['name']!r}")
    return dict(item)


@app.http("GET", "/media/{name}/{rendition}")
def rendition(request):
    name, which = request.path_params["name"], request.path_params["rendition"]
    item = items.get(name)
    if item is None or item.get("status") != "ready":
        raise NotFound(f"{name!r} is not ready")
    found = item["thumbnail"] if which == "thumbnail" else item["renditions"].get(which)
    if found is None:
        raise NotFound(f"no rendition {which!r}; there are: thumbnail, "
                       f"{', '.join(item['renditions'])}")
    obj = media.get(found["key"])
    return Response(200, obj.body, content_type=obj.content_type)


@app.http("GET", "/users/{user}/notifications")
def inbox(request):
    page = notifications.query(request.path_params["user"], reverse=True, limit=50)
    return [{"name": n["name"], "message": n["message"]} for n in page.items]
