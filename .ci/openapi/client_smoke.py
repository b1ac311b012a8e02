"""The client that openapi-python-client generates from /openapi.json, used
as an integrator would: a token for a helpdesk client, a new customer, and
the customer read back for a purpose. Any mismatch ends with exit status 1.

    python client_smoke.py http://127.0.0.1:PORT helpdesk-credentials.json
"""

import json
import sys
import typing
import uuid

from pii_vault_client import AuthenticatedClient, Client
from pii_vault_client.api.customers import create_customer, get_customer, get_field
from pii_vault_client.api.tokens import issue_token
from pii_vault_client.types import Response


def fail(message: str) -> typing.NoReturn:
    print(f"client smoke test FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def body_of(function, data: dict):
    """The generated model for `function`'s request body, built from `data`.

    The body's type comes from the generated signature, so the script does
    not depend on how the generator names the models of a oneOf.
    """
    hint = typing.get_type_hints(function)["body"]
    candidates = typing.get_args(hint) or (hint,)
    for model in candidates:
        if not hasattr(model, "from_dict"):
            continue
        try:
            built = model.from_dict(data)
        except (KeyError, ValueError, TypeError):
            continue
        if built.to_dict() == data:
            return built
    fail(f"no generated model of {function.__module__} takes {sorted(data)}")


def expect(resp: Response, status: int, what: str):
    if resp.status_code != status:
        fail(f"{what}: HTTP {resp.status_code}, expected {status}: {resp.content[:300]!r}")
    if resp.parsed is None:
        fail(f"{what}: the generated client could not parse the answer")
    return resp.parsed


def main() -> None:
    base, creds_file = sys.argv[1], sys.argv[2]
    with open(creds_file, encoding="utf-8") as f:
        creds = json.load(f)

    public = Client(base_url=base, raise_on_unexpected_status=True)
    token = expect(
        issue_token.sync_detailed(
            client=public,
            body=body_of(
                issue_token.sync_detailed,
                {
                    "grant_type": "client_credentials",
                    "client_id": creds["client_id"],
                    "client_secret": creds["client_secret"],
                },
            ),
        ),
        200,
        "POST /v1/token",
    )
    if token.token_type.lower() != "bearer" or not token.access_token:
        fail(f"unexpected token answer {token.to_dict()}")

    api = AuthenticatedClient(base_url=base, token=token.access_token, raise_on_unexpected_status=True)
    external_id = f"ci-{uuid.uuid4()}"
    email = "ada@example.com"
    new_customer = {
        "external_id": external_id,
        "channel": "chat",
        "notice_version": "2026-01",
        "fields": {
            "email": {"value": email, "purposes": ["support"]},
            "phone": {"value": "+39 333 123 4567", "purposes": ["support.callback"]},
        },
    }
    stored = expect(
        create_customer.sync_detailed(
            client=api,
            purpose="support",
            body=body_of(create_customer.sync_detailed, new_customer),
            idempotency_key=str(uuid.uuid4()),
        ),
        201,
        "POST /v1/customers",
    )
    if stored.external_id != external_id:
        fail(f"created {stored.external_id!r}, sent {external_id!r}")
    customer_id = str(stored.id)

    profile = expect(
        get_customer.sync_detailed(client=api, id=customer_id, purpose="support.callback"),
        200,
        "GET /v1/customers/{id}",
    )
    fields = profile.fields.to_dict()
    if str(profile.id) != customer_id or profile.external_id != external_id:
        fail(f"read back {profile.id}/{profile.external_id}, created {customer_id}/{external_id}")
    if fields.get("phone") != "+393331234567":
        fail(f"phone for support.callback: {fields.get('phone')!r}")
    if fields.get("email") != email:
        fail(f"email (collected for support) read for support.callback: {fields.get('email')!r}")

    # The phone was collected for callbacks only: plain support does not see it.
    profile = expect(
        get_customer.sync_detailed(client=api, id=customer_id, purpose="support"),
        200,
        "GET /v1/customers/{id} for support",
    )
    withheld = {w.field: str(w.reason) for w in profile.withheld}
    if "phone" in profile.fields.to_dict() or withheld.get("phone") != "not_collected_for_purpose":
        fail(f"phone for support: fields {profile.fields.to_dict()}, withheld {withheld}")

    one = expect(
        get_field.sync_detailed(client=api, id=customer_id, field="email", purpose="support"),
        200,
        "GET /v1/customers/{id}/fields/{field}",
    )
    if one.field != "email" or one.value != email:
        fail(f"field read {one.to_dict()}")

    refused = get_customer.sync_detailed(client=api, id=customer_id, purpose="no.such.purpose")
    if refused.status_code != 400:
        fail(f"an unknown purpose got HTTP {refused.status_code}, expected 400")

    print(f"generated client: token, create, read for a purpose: ok ({customer_id})")


if __name__ == "__main__":
    main()
