"""Writes Tests/BatonTests/Fixtures/gpt2_tokens.json: test texts and their GPT-2 tokens, from tiktoken
(r50k_base's pattern and ranks, built from data/gpt2-tokenizer/) and checked against Hugging Face's
GPT-2 tokenizer (the `tokenizers` library's byte-level BPE on the same files, set up as GPT-2's
tokenizer.json is: ByteLevel pre-tokenizer without a prefix space). Run by hand:
    python3 scripts/make_tokenizer_fixture.py     (needs tiktoken, tokenizers)
A literal "<|endoftext|>" inside a text is ordinary text (tiktoken's encode_ordinary; no special
tokens registered with `tokenizers`), as Baton treats it.
"""
import json
import os
import sys

import tiktoken
import tokenizers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

sys.path.insert(0, os.path.dirname(__file__))
from gpt2_files import FOLDER, PATTERN, ROOT, ranks  # noqa: E402

encoding = tiktoken.Encoding("r50k_from_files", pat_str=PATTERN, mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 50256})
hf = Tokenizer(models.BPE.from_file(os.path.join(FOLDER, "vocab.json"), os.path.join(FOLDER, "merges.txt")))
hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
hf.decoder = decoders.ByteLevel()

CASES = {
    "prose": "Of Man's first disobedience, and the fruit\nOf that forbidden tree whose mortal taste\nBrought death into the World, and all our woe.",
    "code": "def f(x):\n\tif x  >  1:\t# tabs\n        return   x*2   \n\n\n    else:\n\t\treturn None  \t \n",
    "trailing whitespace": "line one   \nline two\t\t\nend   ",
    "blank-line runs": "a\n\n\nb\n\n\n\n\nc\r\n\r\nd\n",
    "contractions": "it's don't we're they've I'm we'll he'd IT'S DON'T WE'RE THEY'VE I'M WE'LL HE'D 'S 'LL o's '' ''s x'sy",
    "digits": "0 12 345 6789 3.14159 1,000,000 2026-11-29 x86_64 ٣٤٥ Ⅻ ½",
    "accented Latin": "Café naïve façade Ångström coöperate Zürich ŒUVRE señor",
    "CJK": "中文字符测试，日本語のテキスト、한국어 텍스트。",
    "Arabic": "مرحبا بالعالم، هذا اختبار.",
    "emoji": "hi 😀👍🏽 family 👨‍👩‍👧‍👦 flag 🇫🇷 heart ❤️ sparkle ✨",
    "combining marks": "e\u0301 a\u0308 n\u0303 Z\u0335\u0321\u034d a\u20dd",
    "endoftext inside": "before <|endoftext|> after<|endoftext|><|endoftext|> end",
    "odd spaces": "a\u00a0b\u2003c\u3000d \u2028 e\u0085f  \u00a0 g",
    "mixed": "  leading spaces, ...!!! ???  'quoted' \"double\" (paren) [x] {y} $5 @me #tag 100% a+b=c ~/.bashrc",
}

cases = []
for name, text in CASES.items():
    tokens = encoding.encode_ordinary(text)
    reference = hf.encode(text).ids
    assert tokens == reference, f"tiktoken and Hugging Face disagree on {name!r}"
    assert encoding.decode(tokens) == text
    cases.append({"name": name, "text": text, "tokens": tokens})

out = {"tiktoken": tiktoken.__version__, "tokenizers": tokenizers.__version__, "cases": cases}
path = os.path.join(ROOT, "Tests", "BatonTests", "Fixtures", "gpt2_tokens.json")
with open(path, "w", encoding="utf-8") as f:
    json.dump(out, f, ensure_ascii=False, indent=1)
print("wrote", os.path.normpath(path), sum(len(c["tokens"]) for c in cases), "tokens in", len(cases), "cases")
