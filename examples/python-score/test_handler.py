"""The handler's own test: `python3 -m unittest test_handler` in this folder."""
import unittest

import handler


class ScoreTest(unittest.TestCase):
    CONFIG = {"threshold": 0.2, "weights": {"purchase": 1.0, "page_view": 0.3}}

    def test_one_outcome_per_event_in_order(self):
        chunk = {"config": self.CONFIG, "events": [
            {"event_id": "a", "event_type": "purchase"},
            {"event_id": "b", "event_type": "unknown"},
            "not a row",
        ]}
        outcomes = handler.handle(chunk)["outcomes"]
        self.assertEqual([o["outcome"] for o in outcomes], ["forward", "drop", "quarantine"])
        self.assertEqual(outcomes[0]["event"]["event_id"], "a")
        self.assertGreaterEqual(outcomes[0]["event"]["score"], 0.8)
        self.assertEqual(outcomes[1]["reason"], "low_score")

    def test_the_score_is_stable(self):
        row = {"event_id": "x-1", "event_type": "page_view"}
        self.assertEqual(handler.score(row, self.CONFIG), handler.score(row, self.CONFIG))


if __name__ == "__main__":
    unittest.main()
