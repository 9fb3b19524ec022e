"""The handler's own test, with the standard library: `python3 -m unittest` in this folder."""
import json
import unittest

from handler import handler


def batch(*events):
    return {"Records": [{"messageId": f"m-{i}", "body": json.dumps(e)} for i, e in enumerate(events)]}


class HandlerTest(unittest.TestCase):
    def test_sign_ins_fail_and_the_rest_succeed(self):
        result = handler(batch({"event_type": "purchase"}, {"event_type": "login"}, {}), None)
        self.assertEqual(result, {"batchItemFailures": [{"itemIdentifier": "m-1"}]})

    def test_an_empty_batch_has_no_failures(self):
        self.assertEqual(handler({"Records": []}, None), {"batchItemFailures": []})


if __name__ == "__main__":
    unittest.main()
