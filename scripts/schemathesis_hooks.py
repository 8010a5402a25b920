"""schemathesis hooks of the API contract test (scripts/schemathesis.sh).

JSON Schema cannot relate two fields to each other, so a few rules of the
API's validated types are not in the OpenAPI document (their descriptions
say them). Generated bodies that break one of them are dropped here, so that
`positive_data_acceptance` holds the document to everything it *can* say.
Each rule below is one check in crates/api; keep them in step.
"""

import schemathesis


def _rate_limits(body):
    """Every RateLimit object in a body (flavors, servers, server terms)."""
    if not isinstance(body, dict):
        return
    bandwidth = body.get("bandwidth")
    if isinstance(bandwidth, dict):
        for direction in ("inbound", "outbound"):
            limit = bandwidth.get(direction)
            if isinstance(limit, dict):
                yield limit


def _breaks_peak_rule(body):
    # crates/api/src/bandwidth.rs: peak_mbit must not be below average_mbit.
    for limit in _rate_limits(body):
        peak, average = limit.get("peak_mbit"), limit.get("average_mbit")
        if isinstance(peak, (int, float)) and isinstance(average, (int, float)) and peak < average:
            return True
    return False


def _breaks_lease_rule(body):
    # crates/api/src/leases.rs: exactly one of duration_seconds and expires_at.
    if not isinstance(body, dict):
        return False
    # POST /v1/servers has `lease`, POST /v1/servers/{id}/lease has `term`.
    for lease in (body.get("lease"), body.get("term")):
        if isinstance(lease, dict):
            given = [lease.get(k) is not None for k in ("duration_seconds", "expires_at")]
            if sum(given) != 1:
                return True
    return False


@schemathesis.hook
def filter_case(context, case):
    # A case hook, unlike a body hook, also sees the coverage phase's cases.
    body = case.body
    return not (_breaks_peak_rule(body) or _breaks_lease_rule(body))
