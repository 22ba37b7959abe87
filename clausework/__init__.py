"""Clausework's library: what every process, training, bench and the CLI import downward.

- `clausework.pdf`: PDF text and the coordinate system every clause offset refers to;
- `clausework.model`: the embedded CUAD model (shared by the llm service and training);
- `clausework.llm`: the OpenAI-compatible extractor (planner, client, prompts, grounding);
- `clausework.chunking`, `clausework.clauses`: passages and Clause messages, used by both extractors;
- `clausework.pipeline`: the contract between the store, the worker and the gateway (workflow name,
  payloads, object keys, search attributes, states, limits);
- `clausework.runtime`: what every process runs on (settings, JSON logs, gRPC bootstrap, errors, metrics,
  tracing);
- `clausework.cli`: the `contracts` command-line client.

Nothing here imports a service, the orchestrator, training, bench, scripts, deploy or tests
(tests/test_layers.py).
"""
