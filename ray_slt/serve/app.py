"""The serving application: an HTTP ingress (FastAPI) composing the feature and translator deployments.

::

    client ──HTTP──▶ ingress (FastAPI; auth, limits, parsing, deadlines, retries)
                        ├─ handle ─▶ features   (upload/URI -> 77-point keypoints; SampleProcessor)
                        └─ handle ─▶ translator (checkpoint; serve.batch dynamic batching)

Endpoints: ``POST /translate`` (multipart ``file``/``uri`` field, a raw ``video/*`` or ``application/x-pose``
body, or JSON ``{"uri": ...}``; ``?include_pose=true`` adds the extracted pose for drawing) -> JSON with the
text, the timings and the model id; ``GET /healthz``; ``GET /`` the web page; ``GET /docs`` and
``/openapi.json``. Refused inputs get a 4xx with ``{"error": reason}``; the service stays up.

:func:`build_app` makes the Serve application from a :class:`ServeConfig`; :func:`start` deploys it on the
current Ray (started locally when none is running) and returns the base URL; :func:`stop` shuts Serve down.
"""

import asyncio
import hashlib
import hmac
import os
import time
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from ray import serve

from ray_slt.errors import ConfigError
from ray_slt.serve.config import ServeConfig
from ray_slt.serve.inputs import RequestError, parse_request, read_body

STATIC = {"app.js": "text/javascript", "style.css": "text/css", "index.html": "text/html"}

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "description": "A sign language clip: a video or a .pose file as a multipart 'file' field or as the raw "
        "body, or a URI under the server's allowed prefix (multipart 'uri' field or JSON).",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "video or .pose"},
                        "uri": {"type": "string", "description": "a file under the server's inputs.uri_prefix"},
                    },
                }
            },
            "video/*": {"schema": {"type": "string", "format": "binary"}},
            "application/x-pose": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {
                "schema": {"type": "object", "properties": {"uri": {"type": "string"}}, "required": ["uri"]}
            },
        },
    },
    "responses": {
        "200": {
            "description": "The translation",
            "content": {
                "application/json": {
                    "example": {
                        "text": "the man eats an apple",
                        "model_id": "best@3f2a9c01de",
                        "num_frames": 64,
                        "timings": {"read_s": 0.001, "features_s": 0.05, "translate_s": 0.2, "total_s": 0.26},
                    }
                }
            },
        },
        "400": {"description": "malformed request or missing field"},
        "401": {"description": "missing or wrong bearer token (when auth is on)"},
        "403": {"description": "a URI outside the allowed prefix, or URIs not allowed"},
        "404": {"description": "a URI that does not exist"},
        "413": {"description": "upload too large or clip too long"},
        "415": {"description": "unsupported content type or file type"},
        "422": {"description": "the clip cannot be used: undecodable, unsupported codec, no person, bad .pose"},
        "503": {"description": "a replica died and the retry failed, or the service is overloaded"},
        "504": {"description": "not answered within limits.request_timeout_s"},
    },
}

api = FastAPI(
    title="ray_slt translation service",
    description="Sign language translation on Ray Serve: upload a short clip (video or .pose), get text.",
    version="1",
)


def _error(status: int, reason: str, **extra: Any) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": reason, "status": status, **extra}, status_code=status, headers=headers)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _retryable() -> tuple[type[BaseException], ...]:
    import ray.exceptions as rex
    from ray.serve.exceptions import BackPressureError

    return (rex.RayActorError, rex.ActorUnavailableError, BackPressureError)


def _pose_edges() -> list[list[int]]:
    """Edges of the 77-point layout for drawing (the skeleton encoder's graphs, plus wrist links)."""
    from ray_slt.features.layouts import LAYOUT_77_EDGES

    return [list(edge) for edge in LAYOUT_77_EDGES]


def _static(name: str) -> str:
    """A file of the web page (package data)."""
    return resources.files("ray_slt.serve").joinpath("static", name).read_text(encoding="utf-8")


# Everything the ingress uses must be defined above it: serve.ingress serialises the FastAPI app as it is
# when the class is decorated.
@serve.deployment(name="ingress")
@serve.ingress(api)
class Ingress:
    def __init__(self, config: dict, features, translator, token_sha256: str | None = None):
        self.cfg = ServeConfig.model_validate(config)
        self.features = features
        self.translator = translator
        self.token_sha256 = token_sha256
        self.max_bytes = int(self.cfg.limits.max_upload_mb * 1e6)
        self.retry_on = _retryable()
        self._model: dict[str, Any] | None = None
        self._edges = _pose_edges()

    # ------------------------------------------------------------------------------------------- helpers

    def _authorized(self, request: Request) -> bool:
        if self.token_sha256 is None:
            return True
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        return hmac.compare_digest(_token_hash(token.strip()), self.token_sha256)

    async def _call(self, handle, method: str, arg: Any, deadline: float) -> Any:
        """A handle call with the request's deadline, retried when its replica died under it."""
        attempts = self.cfg.limits.retries + 1
        for attempt in range(attempts):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RequestError(504, f"not answered within {self.cfg.limits.request_timeout_s:g} s")
            response = getattr(handle, method).remote(arg)
            try:
                return await asyncio.wait_for(response, timeout=remaining)
            except TimeoutError:
                response.cancel()
                raise RequestError(504, f"not answered within {self.cfg.limits.request_timeout_s:g} s") from None
            except self.retry_on as e:
                if attempt + 1 == attempts:
                    raise RequestError(503, f"{handle.deployment_name} unavailable ({type(e).__name__}); "
                                       "retry later") from None  # fmt: skip
                await asyncio.sleep(0.2 * (attempt + 1))

    async def _model_info(self) -> dict[str, Any]:
        if self._model is None:
            self._model = await self.translator.info.remote()
        return self._model

    # ------------------------------------------------------------------------------------------ endpoints

    @api.post("/translate", openapi_extra=UPLOAD_BODY, summary="Translate a sign language clip to text")
    async def translate(self, request: Request, include_pose: bool = False) -> Response:
        t0 = time.perf_counter()
        deadline = time.monotonic() + self.cfg.limits.request_timeout_s
        if not self._authorized(request):
            return _error(401, "missing or invalid bearer token (Authorization: Bearer TOKEN)")
        try:
            body = await read_body(request.stream(), self.max_bytes, request.headers.get("content-length"))
            clip = parse_request(request.headers.get("content-type"), body, request.query_params)
            t_read = time.perf_counter()
            extracted = await self._call(
                self.features, "extract",
                {"kind": clip.kind, "data": clip.data, "uri": clip.uri, "suffix": clip.suffix,
                 "include_pose": include_pose}, deadline,
            )  # fmt: skip
            if not extracted["ok"]:
                return _error(extracted["status"], extracted["reason"], stage=extracted.get("stage"))
            t_features = time.perf_counter()
            out = await self._call(self.translator, "translate", extracted["sample"], deadline)
            t_done = time.perf_counter()
        except RequestError as e:
            return _error(e.status, e.reason)
        result = {
            "text": out["text"],
            "model_id": out["model_id"],
            "input_kind": extracted["info"]["input_kind"],
            "num_frames": extracted["info"]["num_frames"],
            "pose_estimator": extracted["info"]["pose_estimator"],
            "batch_size": out["batch_size"],
            "timings": {
                "read_s": round(t_read - t0, 4),
                "features_s": round(t_features - t_read, 4),
                **extracted["timings"],
                "translate_s": round(t_done - t_features, 4),
                "model_s": out["model_s"],
                "queue_s": out["queue_s"],
                "total_s": round(time.perf_counter() - t0, 4),
            },
        }
        if include_pose:
            result["pose"] = {**extracted["pose"], "edges": self._edges}
        return JSONResponse(result)

    @api.get("/healthz", summary="Liveness and the model being served")
    async def healthz(self) -> Response:
        try:
            info = await asyncio.wait_for(self._model_info(), timeout=10)
        except Exception as e:  # any failure to reach the model is "unavailable", with its reason
            self._model = None
            return _error(503, f"translator unavailable ({type(e).__name__})", state="unavailable")
        return JSONResponse(
            {
                "status": "ok",
                "model_id": info["model_id"],
                "stage": info["stage"],
                "decoding": info["decoding"],
                "batching": info["batching"],
                "auth": self.token_sha256 is not None,
                "uri_inputs": self.cfg.inputs.uri_prefix is not None,
                "limits": self.cfg.limits.model_dump(),
                "endpoints": ["POST translate", "GET healthz"],
            }
        )

    @api.get("/", include_in_schema=False)
    async def index(self) -> Response:
        if not self.cfg.http.web_page:
            return _error(404, "the web page is disabled (http.web_page=false); see /docs")
        return HTMLResponse(_static("index.html"))

    @api.get("/static/{name}", include_in_schema=False)
    async def static(self, name: str) -> Response:
        if not self.cfg.http.web_page or name not in STATIC:
            return _error(404, f"no such file: {name}")
        return Response(_static(name), media_type=STATIC[name])


# ------------------------------------------------------------------------------------------------- building


def build_app(cfg: ServeConfig, token: str | None = None):
    """The Serve application of ``cfg``: ingress -> (features, translator). ``token``: the bearer token (by
    default read from the environment variable ``cfg.auth.token_env``); only its SHA-256 reaches the ingress."""
    from ray_slt.serve.deployments import FeatureExtractor, Translator
    from ray_slt.serve.model import checkpoint_info

    info = checkpoint_info(cfg.translator.checkpoint)  # fail fast, before any replica starts
    if info["needs_visual"] and cfg.features.visual.kind == "none":
        raise ConfigError(
            f"{cfg.translator.checkpoint} fuses DINOv2 face/hand features: set features.visual.kind=dinov2 and "
            "features.visual.model (or serve a checkpoint trained with fusion.face=false fusion.hand=false)"
        )
    if token is None and cfg.auth.token_env:
        token = os.environ.get(cfg.auth.token_env) or None
        if token is None and cfg.auth.required:
            raise ConfigError(f"auth.required is set but the environment variable {cfg.auth.token_env} is empty")
    config = cfg.model_dump(mode="json")
    features = FeatureExtractor.options(**cfg.features.deployment.deployment_options()).bind(
        config, info["needs_visual"]
    )
    translator = Translator.options(**cfg.translator.deployment.deployment_options()).bind(config)
    ingress = Ingress.options(**cfg.ingress.deployment_options())
    return ingress.bind(config, features, translator, _token_hash(token) if token else None)


def start(cfg: ServeConfig, token: str | None = None, blocking: bool = False) -> str:
    """Deploy ``cfg`` on the current Ray (a local one is started when none is) and return the base URL."""
    import ray

    app = build_app(cfg, token)  # checks the checkpoint and auth before anything starts
    if not ray.is_initialized():
        ray.init(address=cfg.ray_address, ignore_reinit_error=True, log_to_driver=False)
    serve.start(
        http_options={
            "host": cfg.http.host,
            "port": cfg.http.port,
            "keep_alive_timeout_s": cfg.http.keep_alive_timeout_s,
        }
    )
    serve.run(app, name=cfg.app_name, route_prefix=cfg.http.route_prefix, blocking=blocking)
    return base_url(cfg)


def base_url(cfg: ServeConfig) -> str:
    host = "127.0.0.1" if cfg.http.host in ("0.0.0.0", "::", "") else cfg.http.host
    prefix = cfg.http.route_prefix.rstrip("/")
    return f"http://{host}:{cfg.http.port}{prefix}/"


def stop(app_name: str | None = None) -> None:
    """Delete the application (``app_name``) or shut Serve down entirely (None)."""
    if app_name is None:
        serve.shutdown()
    else:
        serve.delete(app_name)
