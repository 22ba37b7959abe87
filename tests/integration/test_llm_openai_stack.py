"""LLM_BACKEND=openai through the whole product: gateway → workflow → llm service → llama-server.

The llm service is started as another replica with the OpenAI-compatible backend pointed at a real
llama-server (SmolLM2-135M: fast, weak), and a worker is pointed at that replica. The small model's
judgement is not asserted; the plumbing is: the extraction succeeds, the model and prompt version are
recorded, token usage is stored and returned, every clause is text the document contains at its
offsets, and (verify, the default strategy) every clause is a run of whole segmentation units.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TypeAlias

import pytest

from bench.llama import LlamaServer, cached_paths
from clausework.llm.verify import VERIFY_VERSION
from clausework.model.embedded import POOLS, EmbeddedExtractor
from clausework.model.segmentation import segment
from clausework.pdf import parse_pdf
from contracts.v1 import extraction_pb2 as pb
from contracts.v1 import extraction_pb2_grpc
from deploy.local.stack import Stack
from tests import pdfs
from tests.conftest import wait_terminal
from tests.integration.test_openai_llama import llama_server, require

Gateway: TypeAlias = "extraction_pb2_grpc.ExtractionServiceAsyncStub"
MODEL = "smollm2-135m"


@pytest.fixture(scope="module")
def llama_smollm2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    paths = cached_paths()
    require(paths, ("LLAMA_SERVER_BIN", "SMOLLM2_GGUF"))
    server = llama_server(paths["LLAMA_SERVER_BIN"], paths["SMOLLM2_GGUF"], tmp_path_factory.mktemp("llama") / "log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def openai_pipeline(stack: Stack, llama_smollm2: LlamaServer) -> Iterator[None]:
    """An llm replica on the OpenAI backend, and the worker calling it instead of the default llm."""
    port = stack.profile.llm + 40
    stack.start_extra(
        "llm-openai",
        "llm",
        port,
        {
            "LLM_PORT": str(port),
            "LLM_BACKEND": "openai",
            "OPENAI_BASE_URL": llama_smollm2.base_url,
            "OPENAI_API_KEY": "not-needed-locally",
            "LLM_MODEL": MODEL,
            "LLM_OPENAI_MAX_OUTPUT_TOKENS": "256",
            "LLM_OPENAI_TIMEOUT_SECONDS": "300",
            "LLM_OPENAI_MAX_CONCURRENCY": "2",
        },
    )
    stack.stop("worker")
    try:
        stack.start_extra("worker-openai", "worker", stack.profile.worker, {"LLM_ADDRESS": f"127.0.0.1:{port}"})
        yield
    finally:
        stack.stop("worker-openai")
        stack.stop("llm-openai")
        stack.start("worker")


@pytest.mark.timeout(900)
async def test_openai_backend_end_to_end(openai_pipeline: None, gateway: Gateway) -> None:
    content = pdfs.text_pdf([f"Reference {uuid.uuid4()}", *pdfs.CONTRACT_PAGES])
    created = await gateway.CreateExtraction(
        pb.CreateExtractionRequest(content=content, filename="openai.pdf", request_id=str(uuid.uuid4())), timeout=30
    )
    extraction = await wait_terminal(gateway, created.id, timeout=600)
    assert extraction.state == pb.STATE_SUCCEEDED, extraction.error
    # verify, the openai default: the proposer model's version is part of the name
    assert extraction.model == f"openai/{MODEL}@{VERIFY_VERSION}+{EmbeddedExtractor.load().model_name}"
    assert extraction.usage.prompt_tokens > 0 and extraction.usage.completion_tokens > 0
    # The stored extraction returns the same usage (read back, not the in-flight value).
    again = await gateway.GetExtraction(pb.GetExtractionRequest(id=created.id), timeout=10)
    assert again.usage == extraction.usage and again.model == extraction.model

    text = parse_pdf(content).text
    units = segment(text)
    starts, ends = {u.start for u in units}, {u.end for u in units}
    for clause in extraction.clauses:
        assert text[clause.char_start : clause.char_end] == clause.text, clause
        assert 0.0 <= clause.confidence <= 1.0
    clauses = [c for c in extraction.clauses if c.category not in POOLS]
    assert clauses, "the contract's clauses come back"
    assert all(c.char_start in starts and c.char_end in ends for c in clauses), "whole segmentation units"
