"""What every report shares: JSON output and a Markdown table of rows."""

import json
import os

from keras_distill._files import write_text


class JsonReport:
    """Gives a report with `to_dict()` its `to_json()` and an atomic `save_json()`."""

    def to_dict(self):
        """Everything in the report, JSON-compatible."""
        raise NotImplementedError

    def to_json(self, indent=2):
        """The report as a JSON string."""
        return json.dumps(self.to_dict(), indent=indent)

    def save_json(self, path):
        """Writes `to_json()` to `path` atomically (folders are created) and returns `path`."""
        return write_text(os.fspath(path), self.to_json() + "\n")


def markdown_table(header, rows):
    """A GitHub Markdown table from a header and rows of cell strings."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)
