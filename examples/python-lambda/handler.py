"""An AWS Lambda handler for an SQS batch, as written for Lambda: nothing in it knows Sluice.

Each record's body is one event as JSON text. Records the handler cannot accept are reported in
batchItemFailures (Lambda's partial-batch response); the rest succeed.
"""
import json


def review(event):
    """Raises for events that need a person to look at them first: sign-ins, here."""
    if event.get("event_type") == "login":
        raise ValueError("sign-in events are reviewed by hand")


def handler(event, context):
    failures = []
    for record in event["Records"]:
        try:
            review(json.loads(record["body"]))
        except Exception:
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
