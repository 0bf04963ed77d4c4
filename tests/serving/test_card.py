"""``GET /v1/models/{name}/card``: the served release's MODEL_CARD.md as text/markdown, verified
against the signed manifest like the model; 404 with a reason where there is none."""

from __future__ import annotations

from pathlib import Path

from model_files import onnx_variant
from serve_client import reload_args

from detpipe.io import sha256_file
from detpipe.model_card import CardInputs, render_card
from detpipe.serving.config import ServerConfig
from detpipe.serving.model import load_model
from detpipe.signing import ReleaseSigner
from detpipe.store import publish

NO_CARD = "has no model card (only releases published with a MODEL_CARD.md have one)"


def _card(tmp_path: Path, version: str) -> Path:
    summary = {"model": "yolov8-pico", "fraction": 100.0, "strategy": "p", "config": {"epochs": 40}}
    text = render_card(CardInputs(name="pico", version=version, train_summary=summary, lineage={}))
    path = tmp_path / f"card-{version}.md"
    path.write_text(text)
    return path


def _store(tmp_path: Path, pico_onnx: Path, release_keys) -> Path:
    """pico/1 with a model card, pico/2 (another model) without one; both signed."""
    store, signer = tmp_path / "store", ReleaseSigner(release_keys[0])
    publish(
        store, "pico", "1", {"model.onnx": pico_onnx, "MODEL_CARD.md": _card(tmp_path, "1")}, signer=signer
    )
    variant = onnx_variant(pico_onnx, tmp_path / "v2.onnx", "2")
    publish(store, "pico", "2", {"model.onnx": variant}, signer=signer)
    return store


def test_the_card_of_the_served_release_and_404_without_one(serve, pico_onnx, tmp_path, release_keys):
    store = _store(tmp_path, pico_onnx, release_keys)
    server = serve(
        "--model", str(store / "models" / "pico" / "1"), "--cache-dir", str(tmp_path / "cache"),
        "--release-key", str(release_keys[1]), *reload_args(tmp_path),
    )  # fmt: skip
    reply = server.get("/v1/models/pico/card")
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"] == "text/markdown; charset=utf-8"
    assert reply.body == (tmp_path / "card-1.md").read_bytes()
    assert reply.body.startswith(b"# Model card: pico 1\n")
    assert (reply.headers["x-model-name"], reply.headers["x-model-version"]) == ("pico", "1")

    reply = server.get("/v1/models/other/card")
    assert (reply.status, reply.json()) == (
        404,
        {"error": "model 'other' is not served here (this server serves 'pico')"},
    )

    reply = server.load("pico", version="2")  # the card follows the model: release 2 has none
    assert reply.status == 200, reply.body
    reply = server.get("/v1/models/pico/card")
    assert (reply.status, reply.json()) == (404, {"error": f"model 'pico' version '2' {NO_CARD}"})
    assert reply.headers["content-type"] == "application/json"


def test_a_model_file_has_no_card(serve, pico_onnx):
    server = serve("--model", str(pico_onnx), "--name", "pico")
    reply = server.get("/v1/models/pico/card")
    version = f"sha-{sha256_file(pico_onnx)[:12]}"
    assert (reply.status, reply.json()) == (404, {"error": f"model 'pico' version '{version}' {NO_CARD}"})


def test_a_cached_card_that_no_longer_matches_the_manifest_is_fetched_again(
    pico_onnx, tmp_path, release_keys
):
    store = _store(tmp_path, pico_onnx, release_keys)
    cfg = ServerConfig(
        model=str(store / "models" / "pico" / "1"), cache_dir=tmp_path / "cache", release_key=release_keys[1]
    )
    first = load_model(cfg)
    assert first.card == (tmp_path / "card-1.md").read_text()
    cached = tmp_path / "cache" / "pico" / "1" / "MODEL_CARD.md"
    cached.write_text("# altered in the cache\n")
    assert load_model(cfg).card == first.card  # refetched and checked, not served as found
    assert sha256_file(cached) == sha256_file(tmp_path / "card-1.md")
