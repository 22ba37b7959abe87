"""Temporal search attributes of extraction workflows, so operators find one by extraction or tenant:
`temporal workflow list --query 'ExtractionId="…"'`, or the same query in the web UI.

Custom search attributes must exist in the namespace before a workflow may carry them: the local stack
registers them when it starts Temporal; on a real cluster an operator creates them once (docs/deploy.md).
"""

from __future__ import annotations

import logging

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

log = logging.getLogger(__name__)

EXTRACTION_ID = SearchAttributeKey.for_keyword("ExtractionId")
TENANT_ID = SearchAttributeKey.for_keyword("TenantId")
REQUIRED = (EXTRACTION_ID, TENANT_ID)
KIND = "Keyword"  # the type of every key in REQUIRED, as the temporal CLI spells it

CREATE_COMMAND = "temporal operator search-attribute create --namespace {namespace} " + " ".join(
    f"--name {key.name} --type {KIND}" for key in REQUIRED
)


def extraction_attributes(extraction_id: str, tenant: str) -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [SearchAttributePair(EXTRACTION_ID, extraction_id), SearchAttributePair(TENANT_ID, tenant)]
    )


async def missing_search_attributes(client: Client, namespace: str) -> list[str]:
    """The required attributes the namespace lacks (or has with another type than Keyword).

    Raises temporalio.service.RPCError when the server will not say (e.g. no operator permission).
    """
    answer = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=namespace))
    known = {**answer.system_attributes, **answer.custom_attributes}
    return [key.name for key in REQUIRED if known.get(key.name) != IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD]


async def use_search_attributes(client: Client, namespace: str) -> bool:
    """Whether to start workflows with the ExtractionId and TenantId search attributes, which Temporal
    rejects unless the namespace defines them. Missing ones are an operator's error, reported loudly, but
    not worth refusing work for: workflows then start without them. Raises RPCError while Temporal is
    unreachable (UNAVAILABLE), so the caller asks again later."""
    try:
        missing = await missing_search_attributes(client, namespace)
    except RPCError as error:  # e.g. a namespace-scoped credential without operator rights: assume they exist
        if error.status == RPCStatusCode.UNAVAILABLE:
            raise
        log.warning("could not list Temporal search attributes", extra={"error": str(error)})
        return True
    if missing:
        log.error(
            "Temporal search attributes missing: workflows start without them, so they cannot be found by "
            "extraction or tenant; create them, then restart the store",
            extra={"missing": missing, "command": CREATE_COMMAND.format(namespace=namespace)},
        )
        return False
    return True
