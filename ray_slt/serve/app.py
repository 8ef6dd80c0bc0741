"""The serving application: an HTTP ingress (FastAPI) composing the feature deployment and one model
deployment per configured route.

::

    client ──HTTP──▶ ingress (FastAPI; auth, limits, parsing, deadlines, retries)
                        ├─ handle ─▶ features        (upload/URI -> 77-point keypoints, or a checked video)
                        ├─ handle ─▶ model-translate (a saved model, through its predictor; serve.batch)
                        └─ handle ─▶ model-...       (every route of ``models`` in the config)

Routes come from the configuration (``models.{route}``), not from code: ``POST /{route}`` runs that route's
model, and what the request carries follows from the model's predictor (``inputs``): a clip for models that read
poses or video (multipart ``file``/``uri`` field, a raw ``video/*`` or ``application/x-pose`` body, or JSON
``{"uri": ...}``; ``?include_pose=true`` adds the extracted pose for drawing), JSON ``{"text": ...}`` or
``{"gloss": ...}`` for models that read text. The answer is the predictor's output (``{"text": ...}`` for
translators) with the model id and timings. ``GET /healthz`` lists the routes; ``GET /`` is the web page;
``GET /docs`` and ``/openapi.json``. Refused inputs get a 4xx with ``{"error": reason}``; the service stays up.

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

from ray_slt.errors import ConfigError, DataError
from ray_slt.serve.config import ServeConfig
from ray_slt.serve.inputs import RequestError, parse_request, parse_text_request, read_body

STATIC = {"app.js": "text/javascript", "style.css": "text/css", "index.html": "text/html"}

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "description": "For a model that reads signing (poses or video): a sign language clip, a video or a .pose "
        "file as a multipart 'file' field or as the raw body, or a URI under the server's allowed prefix (multipart "
        '\'uri\' field or JSON). For a model that reads text: JSON {"text": ...} (or {"gloss": ...}).',
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "video or .pose"},
                        "uri": {"type": "string", "description": "a file under the server's inputs.uri_prefix"},
                        "candidates": {
                            "type": "string",
                            "description": "for recognizers: JSON list of {gloss, description} to rank the sign "
                            "among (signs the model never saw)",
                        },
                    },
                }
            },
            "video/*": {"schema": {"type": "string", "format": "binary"}},
            "application/x-pose": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "uri": {"type": "string", "description": "a clip under the server's inputs.uri_prefix"},
                        "candidates": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {"gloss": {"type": "string"}, "description": {"type": "string"}},
                            },
                            "description": "for recognizers: signs to rank the clip among, by description",
                        },
                        "text": {"type": "string", "description": "for models that read text"},
                        "gloss": {"type": "string", "description": "for models that read glosses"},
                    },
                }
            },
        },
    },
    "responses": {
        "200": {
            "description": "The model's answer (a translator's: the text)",
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
        "404": {"description": "no such route, or a URI that does not exist"},
        "408": {"description": "the request body was not received within limits.body_timeout_s"},
        "413": {"description": "upload too large or clip too long"},
        "415": {"description": "unsupported content type or file type"},
        "422": {"description": "the clip cannot be used: undecodable, unsupported codec, no person, bad .pose"},
        "503": {"description": "a replica died and the retry failed, or the service is overloaded"},
        "504": {"description": "not answered within limits.request_timeout_s"},
    },
}

# The OpenAPI document and its docs page are the ingress's own endpoints: they list every configured route as a
# path of its own (POST /translate, ...), with the request body its model takes.
api = FastAPI(
    title="ray_slt sign language service",
    description="Sign language models on Ray Serve, one route per configured model (POST /translate: upload a "
    "short clip, video or .pose, get text). GET /healthz lists the routes.",
    version="2",
    openapi_url=None,
    docs_url=None,
    redoc_url=None,
)
TEXT_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": {"type": "object", "properties": {"text": {"type": "string"}}}},
        "text/plain": {"schema": {"type": "string"}},
    },
}


def route_paths(generic: dict[str, Any], routes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The OpenAPI paths of the configured routes, from the generic ``POST /{route}`` operation: one path each,
    without the route parameter, with a clip body for models that read signing and a text body otherwise."""
    import copy

    paths = {}
    for route, r in sorted(routes.items()):
        op = copy.deepcopy(generic["post"])
        op["parameters"] = [p for p in op.get("parameters", []) if p.get("name") != "route"]
        op["operationId"] = f"predict_{route}".replace("-", "_")
        op["summary"] = f"{route}: a {r['kind']} model that reads {r['inputs']}"
        if r["inputs"] in ("text", "gloss"):
            op["parameters"] = [p for p in op["parameters"] if p.get("name") != "include_pose"]
            body = copy.deepcopy(TEXT_BODY)
            body["content"]["application/json"]["schema"]["properties"] = {r["inputs"]: {"type": "string"}}
            op["requestBody"] = body
        paths[f"/{route}"] = {"post": op}
    return paths


def _error(status: int, reason: str, **extra: Any) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status == 408:  # the rest of the body may still come: the connection cannot carry another request
        headers = {"Connection": "close"}
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
    """``routes``: ``{route: {"handle": the model deployment, "kind", "inputs": what its samples carry,
    "needs_visual"}}``."""

    def __init__(self, config: dict, features, routes: dict[str, dict[str, Any]], token_sha256: str | None = None):
        self.cfg = ServeConfig.model_validate(config)
        self.features = features
        self.routes = routes
        self.token_sha256 = token_sha256
        self.max_bytes = int(self.cfg.limits.max_upload_mb * 1e6)
        self.retry_on = _retryable()
        self._info: dict[str, dict[str, Any]] = {}
        self._edges = _pose_edges()
        self._openapi: dict[str, Any] | None = None

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

    async def _route_info(self, route: str) -> dict[str, Any]:
        if route not in self._info:
            self._info[route] = await self.routes[route]["handle"].info.remote()
        return self._info[route]

    async def _sample(self, route: str, request: Request, body: bytes, include_pose: bool, deadline: float):
        """The route's model input from the request: ``(sample, extracted or None)``."""
        r = self.routes[route]
        if r["inputs"] in ("text", "gloss"):
            limit = self.cfg.limits.max_text_chars
            return parse_text_request(request.headers.get("content-type"), body, r["inputs"], limit), None
        clip = parse_request(request.headers.get("content-type"), body, request.query_params)
        if clip.candidates is not None and r["predicts"] != "labels":
            raise RequestError(400, f"/{route} takes no candidates (its model predicts {r['predicts']})")
        extracted = await self._call(
            self.features, "extract",
            {"kind": clip.kind, "data": clip.data, "uri": clip.uri, "suffix": clip.suffix,
             "include_pose": include_pose, "visual": r["needs_visual"],
             "want": "video" if r["inputs"] == "video" else "pose"}, deadline,
        )  # fmt: skip
        if not extracted["ok"]:
            raise RequestError(extracted["status"], extracted["reason"])
        sample = extracted["sample"]
        if clip.candidates is not None:
            sample = {**sample, "candidates": clip.candidates}
        return sample, extracted

    async def _language(self, route: str, sample: dict[str, Any]) -> dict[str, Any]:
        """A route whose model produces several sign languages (a producer set): the request's sign language
        chosen (the only one when the set has one), 400 for one it does not have or a spoken language its chain
        does not read, before the request joins a batch."""
        from ray_slt.models.producer_set import choose_language

        languages = (await self._route_info(route)).get("languages")
        if not languages:
            return sample
        try:
            code = choose_language(languages, sample.get("sign_language"), sample.get("spoken_language"))
        except DataError as e:
            raise RequestError(400, e.reason) from None
        return {**sample, "sign_language": code}

    # ------------------------------------------------------------------------------------------ endpoints

    @api.post("/{route}", openapi_extra=UPLOAD_BODY, summary="Run a served model (POST /translate, ...)")
    async def predict(self, route: str, request: Request, include_pose: bool = False) -> Response:
        t0 = time.perf_counter()
        deadline = time.monotonic() + self.cfg.limits.request_timeout_s
        if route not in self.routes:
            return _error(404, f"no route {route!r}; this server has: {', '.join(sorted(self.routes))}")
        if not self._authorized(request):
            return _error(401, "missing or invalid bearer token (Authorization: Bearer TOKEN)")
        try:
            limits = self.cfg.limits
            body = await read_body(request.stream(), self.max_bytes, request.headers.get("content-length"),
                                   int(limits.drain_mb * 1e6), limits.body_timeout_s)  # fmt: skip
            t_read = time.perf_counter()
            sample, extracted = await self._sample(route, request, body, include_pose, deadline)
            if extracted is None:
                sample = await self._language(route, sample)
            t_features = time.perf_counter()
            out = await self._call(self.routes[route]["handle"], "predict", sample, deadline)
            t_done = time.perf_counter()
        except RequestError as e:
            return _error(e.status, e.reason)
        timings = {"read_s": round(t_read - t0, 4), "features_s": round(t_features - t_read, 4)}
        result = {k: v for k, v in out.items() if k not in ("model_s", "queue_s")}
        result["route"] = route
        if extracted is not None:
            info = extracted["info"]
            result.update(input_kind=info["input_kind"], num_frames=info["num_frames"],
                          pose_estimator=info["pose_estimator"])  # fmt: skip
            timings.update(extracted["timings"])
        else:
            result["input_kind"] = self.routes[route]["inputs"]
        result["timings"] = {**timings, "model_call_s": round(t_done - t_features, 4), "model_s": out["model_s"],
                             "queue_s": out["queue_s"], "total_s": round(time.perf_counter() - t0, 4)}  # fmt: skip
        if include_pose and extracted is not None and extracted.get("pose") is not None:
            result["pose"] = {**extracted["pose"], "edges": self._edges}
        return JSONResponse(result)

    @api.get("/healthz", summary="Liveness and the models being served, by route")
    async def healthz(self) -> Response:
        routes = {}
        for route in sorted(self.routes):
            try:
                routes[route] = await asyncio.wait_for(self._route_info(route), timeout=10)
            except Exception as e:  # any failure to reach a model is "unavailable", with its reason
                self._info.pop(route, None)
                return _error(503, f"model of /{route} unavailable ({type(e).__name__})", state="unavailable")
        return JSONResponse(
            {
                "status": "ok",
                "routes": routes,
                "auth": self.token_sha256 is not None,
                "uri_inputs": self.cfg.inputs.uri_prefix is not None,
                "limits": self.cfg.limits.model_dump(),
                "endpoints": [f"POST {route}" for route in sorted(self.routes)] + ["GET healthz"],
            }
        )

    @api.get("/openapi.json", include_in_schema=False)
    async def openapi(self, request: Request) -> Response:
        if self._openapi is None:
            from fastapi.openapi.utils import get_openapi

            app = request.app
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            generic = schema["paths"].pop("/{route}")
            schema["paths"] = {**route_paths(generic, self.routes), **schema["paths"]}
            self._openapi = schema
        return JSONResponse(self._openapi)

    @api.get("/docs", include_in_schema=False)
    async def docs(self) -> Response:
        from fastapi.openapi.docs import get_swagger_ui_html

        return get_swagger_ui_html(openapi_url="openapi.json", title="ray_slt · API")

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


def route_table(cfg: ServeConfig) -> dict[str, dict[str, Any]]:
    """Every route's model, resolved and checked before any replica starts: ``{route: {"kind", "inputs",
    "needs_visual", "model"}}`` (JSON files only; no weights are read). A missing checkpoint, a model kind
    nobody serves, predictor options it does not take, or DINOv2 features that are not configured fail here."""
    from ray_slt.models.registry import predictor_class, resolve

    table = {}
    for route, m in cfg.models.items():
        ref = resolve(m.checkpoint)
        cls = predictor_class(ref.kind)
        cls.check_options(m.options)
        req = cls.requirements(ref)
        if req["needs_visual"] and cfg.features.visual.kind == "none":
            raise ConfigError(
                f"models.{route}: {m.checkpoint} fuses DINOv2 face/hand features: set features.visual.kind=dinov2 "
                "and features.visual.model (or serve a checkpoint trained with fusion.face=false fusion.hand=false)"
            )
        table[route] = {"kind": ref.kind, "model": ref.model, "predicts": cls.predicts, **req}
    return table


def build_app(cfg: ServeConfig, token: str | None = None):
    """The Serve application of ``cfg``: ingress -> (features, one model deployment per route). ``token``: the
    bearer token (by default read from the environment variable ``cfg.auth.token_env``); only its SHA-256
    reaches the ingress."""
    from ray_slt.serve.deployments import FeatureExtractor, ModelServer

    table = route_table(cfg)  # fail fast, before any replica starts
    if token is None and cfg.auth.token_env:
        token = os.environ.get(cfg.auth.token_env) or None
        if token is None and cfg.auth.required:
            raise ConfigError(f"auth.required is set but the environment variable {cfg.auth.token_env} is empty")
    config = cfg.model_dump(mode="json")
    needs_visual = any(t["needs_visual"] for t in table.values())
    features = None  # only when a route's model reads signing (poses or video)
    if any(t["inputs"] in ("pose", "video") for t in table.values()):
        options = cfg.features.deployment.deployment_options()
        features = FeatureExtractor.options(**options).bind(config, needs_visual)
    routes = {
        route: {
            "handle": ModelServer.options(name=f"model-{route}", **m.deployment.deployment_options()).bind(
                config, route
            ),
            "kind": table[route]["kind"],
            "predicts": table[route]["predicts"],
            "inputs": table[route]["inputs"],
            "needs_visual": table[route]["needs_visual"],
        }
        for route, m in cfg.models.items()
    }
    ingress = Ingress.options(**cfg.ingress.deployment_options())
    return ingress.bind(config, features, routes, _token_hash(token) if token else None)


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
