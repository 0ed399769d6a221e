"""Count the words of a text file; write the count to <out>/count.txt."""

import sys
from pathlib import Path

source, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
words = len(source.read_text(encoding="utf-8").split())
(out / "count.txt").write_text(f"{words}\n", encoding="utf-8")
print(f"{words} words in {source.name}")
