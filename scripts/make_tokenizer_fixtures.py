#!/usr/bin/env python3
"""Make the tokenizer fixtures with the Hugging Face `tokenizers` library (the reference).

Writes:
  tests/fixtures/tokenizer/tokenizer.json  a byte-level BPE configured exactly like Qwen2's
      (NFC normalizer; Split(Qwen regex, Isolated) + ByteLevel(add_prefix_space=false,
      use_regex=false); ByteLevel decoder; Qwen's 22 added tokens after the vocabulary, in Qwen's
      order and with Qwen's special flags), trained on a generated multilingual corpus.
  tests/fixtures/tokenizer/cases.jsonl      held-out strings (llama.cpp's Qwen2 tokenizer test
      inputs, edge cases, generated text) with the ids the library gives, one JSON object a line:
      {"text": s, "ids": [...]} plus "dec_skip" (decode with skip_special_tokens=True) when the
      ids hold a special token. decode(ids) == NFC(text) is asserted here for every case.
  tests/fixtures/tokenizer/chat.jsonl, tiny_chat.jsonl  chat-template cases for both tokenizers:
      {"system", "user", "image_tokens", "answer", "prompt_ids", "answer_ids"}, the text built
      from the template as the spec writes it out.
  tests/fixtures/imagedoctor_text/*.jsonl   the reference's parsing (Python `re` + float(), spec
      imagedoctor.md 5.5) of malformed and generated completions, Python repr(float) values, and
      responses in the builder's format.
  configs/tiny/tokenizer.json               the small Qwen2-format tokenizer of the tiny preset,
      trained on ImageDoctor-like English (prompts, responses, captions), with the 22 Qwen
      added tokens and then <|mis|>, <|art|> at the end of the vocabulary.

Both vocabularies are laid out like Qwen's: ids 0..255 are the 256 byte symbols in GPT-2's
bytes_to_unicode order (so 'Ġ'=220, 'Ċ'=198, '0'=15 as in Qwen), then the merged tokens in the
order the trainer created them, then the added tokens.

Run from the repo root: python3 scripts/make_tokenizer_fixtures.py  (creates scripts/.venv with
`tokenizers` when run with another interpreter). Deterministic: same files on every run.
"""
import json
import os
import random
import subprocess
import sys
import unicodedata

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, "scripts", ".venv")
TOKENIZERS_VERSION = "0.23.3"


def ensure_venv():
    """Re-exec inside scripts/.venv with `tokenizers` installed."""
    try:
        import tokenizers  # noqa: F401

        return
    except ImportError:
        pass
    py = os.path.join(VENV, "bin", "python")
    if os.path.abspath(sys.executable) == os.path.abspath(py):
        raise SystemExit("tokenizers is not installed in scripts/.venv")
    if not os.path.exists(py):
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
    subprocess.check_call([py, "-m", "pip", "install", "-q", f"tokenizers=={TOKENIZERS_VERSION}"])
    os.execv(py, [py] + sys.argv)


ensure_venv()
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models  # noqa: E402
from tokenizers import normalizers, pre_tokenizers, trainers  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "scripts"))
from imagedoctor_texts import (  # noqa: E402
    GRPO_PREFIX,
    PROMPT_STAGE1,
    PROMPT_STAGE2,
    build_response,
    reference_parse,
    sample_caption,
    sample_response,
)

QWEN_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
    r"\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Qwen2.5's added tokens, ids 151643.. in this order (qwen25vl_sam.md 1.3); (content, special).
QWEN_ADDED = [
    ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
    ("<|object_ref_start|>", True), ("<|object_ref_end|>", True),
    ("<|box_start|>", True), ("<|box_end|>", True),
    ("<|quad_start|>", True), ("<|quad_end|>", True),
    ("<|vision_start|>", True), ("<|vision_end|>", True),
    ("<|vision_pad|>", True), ("<|image_pad|>", True), ("<|video_pad|>", True),
    ("<tool_call>", False), ("</tool_call>", False),
    ("<|fim_prefix|>", False), ("<|fim_middle|>", False), ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False), ("<|repo_name|>", False), ("<|file_sep|>", False),
]
TASK_TOKENS = ["<|mis|>", "<|art|>"]

# The tiny preset's tokenizer: TINY_MODEL_VOCAB trained tokens (ids 0..TINY_MODEL_VOCAB-1), then
# the 22 Qwen added tokens, then the two task tokens. The script asserts these ids.
TINY_MODEL_VOCAB = 1000
TINY_IDS = {c: TINY_MODEL_VOCAB + i for i, (c, _) in enumerate(QWEN_ADDED)}
TINY_IDS["<|mis|>"] = TINY_MODEL_VOCAB + 22  # 1022
TINY_IDS["<|art|>"] = TINY_MODEL_VOCAB + 23  # 1023
TINY_TOTAL = TINY_MODEL_VOCAB + 24  # 1024 ids in all (the tiny embedding's rows)

FIXTURE_MODEL_VOCAB = 4000


def bytes_to_unicode():
    """GPT-2's byte -> printable character map, in its id order (the `bs` list)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1))
    bs += list(range(0xAE, 0xFF + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [(b, chr(c)) for b, c in zip(bs, cs)]


def qwen_like_tokenizer():
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    return tok


def train(corpus, vocab_size, added, exact=True):
    """Train, then re-lay the vocabulary Qwen's way and add `added` [(content, special)].
    With exact, the corpus must yield vocab_size tokens (else fewer are allowed)."""
    tok = qwen_like_tokenizer()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    j = json.loads(tok.to_str())
    old = j["model"]["vocab"]
    byte_syms = [c for _, c in bytes_to_unicode()]
    assert all(c in old for c in byte_syms), "trainer lost a byte symbol"
    rest = sorted((i, t) for t, i in old.items() if t not in set(byte_syms))
    vocab = {c: i for i, c in enumerate(byte_syms)}
    for _, t in rest:
        vocab[t] = len(vocab)
    assert len(vocab) == vocab_size or not exact, (len(vocab), vocab_size)
    j["model"]["vocab"] = vocab
    j["model"]["dropout"] = None
    j["model"]["unk_token"] = None
    j["model"]["continuing_subword_prefix"] = ""
    j["model"]["end_of_word_suffix"] = ""
    j["model"]["fuse_unk"] = False
    j["model"]["byte_fallback"] = False
    j["model"]["ignore_merges"] = False
    tok = Tokenizer.from_str(json.dumps(j))
    for content, special in added:
        t = AddedToken(content, single_word=False, lstrip=False, rstrip=False, normalized=False,
                       special=special)
        n = tok.add_special_tokens([t]) if special else tok.add_tokens([t])
        assert n == 1
    return tok


def save(tok, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    j = json.loads(tok.to_str())
    # Qwen's files carry a ByteLevel post-processor (offsets only; adds no tokens).
    j["post_processor"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                           "use_regex": False}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    return Tokenizer.from_file(path)


# ---- generated multilingual text ----------------------------------------------------------------
EN = ("the of and to in is that it was for on are with as his they be at one have this from or had "
      "by hot word but what some we can out other were all there when up use your how said an each "
      "she which do their time if will way about many then them write would like so these her long "
      "make thing see him two has look more day could go come did number sound no most people my "
      "over know water than call first who may down side been now find image caption model region "
      "artifact hand finger face texture lighting shadow color composition background object").split()
FR = "été café naïve déjà où garçon français Noël crème brûlée über mañana señor Ångström".split()
DE = "Äpfel Übergrößenträger Straße Fußgänger schön Mädchen Größe Führer Bücher".split()
VI = "Cửa Việt Tiếng Việt người được những Hà Nội Phở Chào thế giới".split()
RU = "нещо на Български Привет мир Здравей свят человек изображение тень рука".split()
EL = "Γειά σου Κόσμε καλημέρα φως χρώμα".split()
ZH = "我想在apple工作 你好世界 这是一个测试 图像 生成 模型 评估 漢字".split()
JA = "こんにちは 世界 今日はいい天気ですね ひらがな カタカナ 東京".split()
KO = "안녕하세요 세계 이미지 평가".split()
KM = "កាន់តែពិសេសអាចខលចេញ សួស្តីពិភពលោក ភាសាខ្មែរ".split()
AR = "مرحبا بالعالم سلام دنیا".split()
HI = "हैलो वर्ल्ड नमस्ते".split()
TH = "สวัสดีชาวโลก ภาษาไทย".split()
EMOJI = ["🚀", "😶‍🌫️", "✅", "🦙", "😁", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷", "❤️", "🏳️‍🌈", "☺", "🤖", "½", "™",
         "©", "→", "…", "—", "“", "”", "«", "»", "¡", "¿", "€", "£", "°", "×", "±"]
CODE = ["def f(x):\n    return x * 2\n", "int main(void) { return 0; }", "for (i = 0; i < n; i++)",
        "if x != None:\n\tpass", "a_b = c->d[3];", "#include <stdio.h>", "print(f'{x:.2f}')",
        "```python\nimport os\n```", "x += 1  # comment", "<div class=\"a\">b</div>",
        "{\"key\": [1, 2.5, -3e10]}", "SELECT * FROM t WHERE id=42;"]
SPACES = [" ", "  ", "   ", "    ", "\t", "\n", "\n\n", "\r\n", "\r\n\r\n", " \n ", "\t\n", "\u00a0",
          "\u3000", "\u2009", "\u0085", "\u2028", "\v", "\f", "\r"]
CONTRACTIONS = ["I've", "he's", "'RE", "'M", "I'll", "'D", "We'Ve", "a'lL", "don't", "it'S", "'ſ"]


def word(r):
    pool = r.choice([EN, EN, EN, FR, DE, VI, RU, EL, ZH, JA, KO, KM, AR, HI, TH])
    w = r.choice(pool)
    if r.random() < 0.15:
        w = w.capitalize()
    if r.random() < 0.05:
        w = w.upper()
    return w


def number(r):
    k = r.random()
    if k < 0.4:
        return str(r.randint(0, 10 ** r.randint(1, 9)))
    if k < 0.7:
        return f"{r.random() * 10 ** r.randint(0, 4):.{r.randint(1, 4)}f}"
    if k < 0.85:
        return f"[{r.randint(0, 512)},{r.randint(0, 512)},{r.randint(0, 512)},{r.randint(0, 512)}]"
    return r.choice(["3.3", "3..3", "3...3", "1e10", "-42", "+7", "0x1F", "1,000,000", "٣٤", "４２"])


def fragment(r):
    k = r.random()
    if k < 0.55:
        return word(r)
    if k < 0.65:
        return number(r)
    if k < 0.72:
        return r.choice(EMOJI)
    if k < 0.78:
        return r.choice(CONTRACTIONS)
    if k < 0.84:
        return r.choice(CODE)
    if k < 0.92:
        return r.choice(",.;:!?()[]{}-=+*/\\\"'`~@#$%^&|<>_") * r.randint(1, 3)
    return r.choice(SPACES)


def sentence(r, n_max=18):
    out = []
    for _ in range(r.randint(1, n_max)):
        out.append(fragment(r))
        out.append(r.choice([" ", " ", " ", "", r.choice(SPACES)]))
    s = "".join(out)
    if r.random() < 0.2:  # decomposed accents: the normalizer must compose them
        s = unicodedata.normalize("NFD", s)
    return s


def random_unicode(r):
    ranges = [(0x20, 0x7E), (0xA0, 0x17F), (0x300, 0x36F), (0x370, 0x3FF), (0x400, 0x4FF),
              (0x590, 0x6FF), (0x900, 0x97F), (0xE00, 0xE7F), (0x1100, 0x11FF), (0x1780, 0x17FF),
              (0x1E00, 0x1EFF), (0x2000, 0x206F), (0x20A0, 0x20CF), (0x2100, 0x214F), (0x3000, 0x30FF),
              (0x4E00, 0x4FFF), (0xAC00, 0xAD00), (0xFE00, 0xFE0F), (0xFF00, 0xFFEF), (0x1F300, 0x1F6FF),
              (0x1F900, 0x1F9FF), (0x1D400, 0x1D7FF), (0x9, 0xD)]
    out = []
    for _ in range(r.randint(1, 24)):
        lo, hi = r.choice(ranges)
        c = r.randint(lo, hi)
        if 0xD800 <= c <= 0xDFFF:
            continue
        out.append(chr(c))
    return "".join(out)


def training_corpus(seed, n):
    r = random.Random(seed)
    lines = [sentence(r) for _ in range(n)]
    lines += [random_unicode(r) for _ in range(n // 10)]
    return lines


# llama.cpp's tokenizer test inputs (convert_hf_to_gguf_update.py / ggml-vocab-qwen2.gguf.inp).
LLAMACPP_CHKTXT = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis "
    "concatenated) ✅ 🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 "
    "កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ ------======= нещо на Български "
    "''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, 'RE you sure? 'M not sure "
    "I'll make it, 'D you like some tea? We'Ve a'lL"
)
LLAMACPP = [
    "ied 4 ½ months", "Führer", "", " ", "  ", "   ", "\t", "\n", "\n\n", "\n\n\n", "\t\n",
    "Hello world", " Hello world", "Hello World", " Hello World", " Hello World!", "Hello, world!",
    " Hello, world!", " this is 🦙.cpp", "w048 7tuijk dsdfhu", "нещо на Български",
    "កាន់តែពិសេសអាចខលចេញ",
    "🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) ✅ (only emoji that has its own token)",
    "Hello", " Hello", "  Hello", "   Hello", "    Hello", "    Hello\n    Hello", " (", "\n =", "' era",
    "Hello, y'all! How are you 😁 ?我想在apple工作1314151天～", "!!!!!!", "3", "33", "333", "3333",
    "33333", "333333", "3333333", "33333333", "333333333", "Cửa Việt", " discards", LLAMACPP_CHKTXT,
    # test_pre_tok_params() of the same script
    "ü, ǖ, ǘ, ǚ, ǜ", "綠, 女, 怒, 玉, 句", "¡Hola Mundo!", "Olá Mundo!", "Selam Dünya!",
    "Salam, dünýä!", "Γειά σου Κόσμε!", "हैलो वर्ल्ड!", "สวัสดีชาวโลก!", "こんにちは世界！", "你好世界！",
    "Hàlo a Shaoghail!", "Chào thế giới!", "Привет, мир!", "Здравей свят!", "សួស្តីពិភពលោក!",
    "The quick brown fox jumped over the lazy dog.",
    "Le rapide renard brun sauta par dessus le chien paresseux.", "\tWil je een kopje thee?\n",
    " Te gustaría algo de té ?   ", "העלא וועלט!", "سلام دنیا!",
    "What is 2 plus 2?", "Äpfel", "3.14159 2,718 -42 1e10",
]

EDGE = [
    # added tokens inside text (matched whole, before normalization, leftmost-longest)
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n",
    "<|vision_start|><|image_pad|><|image_pad|><|image_pad|><|vision_end|>Describe.<|im_end|>\n",
    "a<|im_end|>b", "<|im_end|><|im_end|>", "<|im_end", "<|im_end|", "<<|im_end|>>", "< |im_end|>",
    "<tool_call>{\"x\": 1}</tool_call>", "text<|endoftext|>more", " <|im_start|> ", "\n<|im_end|>\n",
    "<|fim_prefix|>def f():<|fim_suffix|>\n<|fim_middle|>", "<|IM_END|>", "<|im_end|>é\u0301",
    "e\u0301<|im_end|>e\u0301", "<|box_start|>(10,20),(30,40)<|box_end|>",
    # CRLF and whitespace runs
    "line1\r\nline2\r\n", "\r\n\r\n\r\n", " \r\n ", "a \r\n\tb", "\r", "\r\r\n\n", "x\n\n\n\ny",
    "    \n    ", "\t\t\tx", "a          b", " " * 40, "\n" * 20, "end   ", "   \t  \n  x",
    "\u00a0\u00a0x", "\u3000x\u3000", "a\u0085b", "a\u2028b\u2029c", "a\u200bb", "\v\f", "x\u2009y",
    # digits
    "0123456789", "12.50 USD", "٣٤٥ ٦", "１２３", "²³¹", "Ⅻ ⅻ", "3rd 4th 1st", "1e-5", "[12, -3.5, 0]",
    # accents: NFC vs NFD (the normalizer composes)
    "café", "cafe\u0301", "Ame\u0301lie", "n\u0303", "A\u030a", "\u1e9b\u0323", "o\u0308\u0304",
    "ḱ\u0301", "\u0344", "\u0958", "한국어", "\u1112\u1161\u11ab", "Å", "Ω", "ﬁ ﬀ",
    # contractions, case-insensitive
    "I'M HE'S YOU'RE WE'VE SHE'LL I'D IT'T", "'s's's", "'sfoo", "x's", "'ſ", "''s", "rock'n'roll",
    # letters absorbing one preceding symbol
    "_foo", "$bar", "(baz", "#tag", "@user", "a.b.c", "--flag", "x=y+z", "…and", "«quoted»",
    # emoji and ZWJ sequences
    "👨\u200d👩\u200d👧\u200d👦", "👍🏽👍🏿", "🇫🇷🇩🇪", "❤️‍🔥", "🏳️‍🌈", "a🦙b", "😀😀😀😀",
    # misc
    "\x00", "a\x00b", "\x1b[31mred\x1b[0m", "\ufeffBOM", "\ufffd", "\U0010fffd", "\u0300start",
]


def held_out(seed, n):
    r = random.Random(seed)
    out = []
    for i in range(n):
        k = i % 5
        if k == 0:
            s = random_unicode(r)
        elif k == 1:
            s = sentence(r, 8)
        elif k == 2:
            s = sentence(r, 30)
        elif k == 3:  # added tokens spliced into text
            parts = [sentence(r, 5) for _ in range(r.randint(1, 4))]
            s = "".join(p + r.choice(QWEN_ADDED)[0] for p in parts)
        else:
            s = "".join(r.choice([" ", "\n", "\t", "\r\n", "\u00a0", "a", "1", "'s", "é", "é"])
                        for _ in range(r.randint(1, 16)))
        out.append(s)
    return out


def write_cases(tok, strings, path):
    special_ids = {tok.token_to_id(c) for c, sp in QWEN_ADDED if sp}
    with open(path, "w", encoding="utf-8") as f:
        for s in strings:
            ids = tok.encode(s).ids
            dec = tok.decode(ids, skip_special_tokens=False)
            assert dec == unicodedata.normalize("NFC", s), (s, dec)
            rec = {"text": s, "ids": ids}
            if "\x00" in s:  # C JSON readers stop strings at NUL
                rec["text_hex"] = s.encode("utf-8").hex()
            if special_ids.intersection(ids):
                rec["dec_skip"] = tok.decode(ids, skip_special_tokens=True)
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")


def chat_text(system, user, image_tokens, answer):
    """The qwen2_vl template as spec qwen25vl_sam.md section 5 writes it out (images first)."""
    t = "<|im_start|>system\n" + (system if system is not None else "You are a helpful assistant.")
    t += "<|im_end|>\n<|im_start|>user\n"
    for n in image_tokens:
        t += "<|vision_start|>" + "<|image_pad|>" * n + "<|vision_end|>"
    prompt = t + user + "<|im_end|>\n<|im_start|>assistant\n"
    return prompt, (None if answer is None else answer + "<|im_end|>\n")


def write_chat_cases(tok, path, with_task_tokens):
    """Chat-template cases: the prompt and the answer turn are encoded separately, as
    LLaMA-Factory encodes each message."""
    r = random.Random(4)
    cases = [(None, "Describe this image.", [4], None),
             (None, "What is 2 plus 2?", [], "4"),
             ("", "x", [1, 2], "\n leading newline and space"),
             ("Be brief.", "<|im_end|> injected", [3], "ok<|im_end|>"),
             (None, PROMPT_STAGE2.replace("{caption}", "a red cube on a table"), [324],
              sample_response(r))]
    for _ in range(8):
        cases.append((None if r.random() < 0.8 else sentence(r, 4),
                      (PROMPT_STAGE1 if r.random() < 0.5 else PROMPT_STAGE2).replace(
                          "{caption}", sample_caption(r) if with_task_tokens else sentence(r, 6)),
                      [r.randint(1, 64) for _ in range(r.randint(0, 2))],
                      sample_response(r) if r.random() < 0.7 else None))
    with open(path, "w", encoding="utf-8") as f:
        for system, user, imgs, answer in cases:
            prompt, ans = chat_text(system, user, imgs, answer)
            rec = {"system": system, "user": user, "image_tokens": imgs, "answer": answer,
                   "prompt_ids": tok.encode(prompt).ids,
                   "answer_ids": None if ans is None else tok.encode(ans).ids}
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")


def make_fixture():
    corpus = training_corpus(1, 30000)
    tok = save(train(corpus, FIXTURE_MODEL_VOCAB, QWEN_ADDED),
               os.path.join(ROOT, "tests/fixtures/tokenizer/tokenizer.json"))
    strings = LLAMACPP + EDGE + held_out(2, 2200)
    # Every string once (the order above is kept).
    seen, uniq = set(), []
    for s in strings:
        if s not in seen:
            seen.add(s)
            uniq.append(s)
    assert len(uniq) >= 2000
    write_cases(tok, uniq, os.path.join(ROOT, "tests/fixtures/tokenizer/cases.jsonl"))
    write_chat_cases(tok, os.path.join(ROOT, "tests/fixtures/tokenizer/chat.jsonl"), False)
    # Byte symbols sit where Qwen has them.
    for sym, want in [("Ġ", 220), ("Ċ", 198), ("0", 15), ("2", 17), ("!", 0), ("~", 93)]:
        assert tok.token_to_id(sym) == want, (sym, tok.token_to_id(sym))
    for i, (c, _) in enumerate(QWEN_ADDED):
        assert tok.token_to_id(c) == FIXTURE_MODEL_VOCAB + i
    print(f"fixture tokenizer: {tok.get_vocab_size()} ids, {len(uniq)} cases")


def make_tiny():
    r = random.Random(3)
    corpus = []
    for _ in range(6000):
        cap = sample_caption(r)
        corpus.append(PROMPT_STAGE2.replace("{caption}", cap))
        corpus.append(sample_response(r))
        if r.random() < 0.3:
            corpus.append(PROMPT_STAGE1.replace("{caption}", cap))
            corpus.append(GRPO_PREFIX + cap)
    for _ in range(3000):  # plain English so that other text does not fall apart into bytes
        corpus.append(" ".join(r.choice(EN) for _ in range(r.randint(3, 15))) + r.choice(".?!,;:"))
    # The chat template's own words, as often as the prompts.
    corpus += ["system\nYou are a helpful assistant.", "user\n", "assistant\n"] * 6000
    tok = save(train(corpus, TINY_MODEL_VOCAB, QWEN_ADDED + [(t, True) for t in TASK_TOKENS]),
               os.path.join(ROOT, "configs/tiny/tokenizer.json"))
    for c, want in TINY_IDS.items():
        assert tok.token_to_id(c) == want, (c, tok.token_to_id(c), want)
    assert tok.get_vocab_size() == TINY_TOTAL
    write_chat_cases(tok, os.path.join(ROOT, "tests/fixtures/tokenizer/tiny_chat.jsonl"), True)
    n = len(tok.encode(PROMPT_STAGE2.replace("{caption}", "a red cube on a table")).ids)
    print(f"tiny tokenizer: {TINY_TOTAL} ids (<|im_start|>={TINY_IDS['<|im_start|>']}, "
          f"<|im_end|>={TINY_IDS['<|im_end|>']}, <|image_pad|>={TINY_IDS['<|image_pad|>']}, "
          f"<|mis|>={TINY_IDS['<|mis|>']}, <|art|>={TINY_IDS['<|art|>']}); "
          f"stage-2 prompt = {n} tokens")


PARSE_EDGE = [
    "", "<answer>", "</answer><answer>", "<answer></answer>", "<answer>x</answer>",
    "<answer>Semantic Alignment score: 0.5;</answer>",
    "<answer>Semantic Alignment score: 0.5</answer>",  # missing ';': not found
    "<answer>Overall Impression score: 0.7</answer>",  # no ';' needed
    "<answer>Semantic Alignment score: 1.2.3; Aesthetic score: .; Plausibility score: 5.;"
    " Overall Impression score: .25</answer>",
    "<answer>Semantic Alignment score: 7.5; Aesthetic score: 0009; Plausibility score: -1;"
    " Overall Impression score: 99999999999999999999999999</answer>",
    "<answer>Semantic Alignment score: x; Semantic Alignment score: 0.25;</answer>",
    "<answer>semantic alignment score: 0.5; Semantic Alignment score:0.5;</answer>",
    "Semantic Alignment score: 0.9; <answer>Semantic Alignment score: 0.1;</answer>"
    "<answer>Semantic Alignment score: 0.2;</answer>",
    "<answer>Aesthetic score: 0.3;\n</answer><answer>Aesthetic score: 0.4;</answer>",
    "<answer><answer>Plausibility score: 0.6;</answer></answer>",
    "<answer>Overall Impression score: 0.8</answer", "<think>[1,2,3,4]</think>",
    "[1,2,3,4]", "[ 1 , 2 , 3 , 4 ]", "[1,2,3]", "[1,2,3,4,5]", "[1,2,3,4", "1,2,3,4]",
    "[[1,2,3,4]]", "[1.5,-2,+3.25,4.]", "[1.5,-2,+3.25,4.0]", "[-10,-20,-5,-1]",
    "[400,300,100,50]", "[1e3,2,3,4]", "[" + "9" * 400 + ",0,0,0]", "[0,0,0," + "1" * 30 + "]",
    "[١,٢,٣,٤]", "[\u00a01,\u30002,\t3\n,4\u2028]", "[1,2,3,4][5,6,7,8]", "[1,2,3,[4,5,6,7]",
    "1.[10,20,30,40];\n2.[50,60,70,80];", "1:[249,86,375,186]; 2:[116,229,201,421].",
    "[+-1,2,3,4]", "[ 1,2,3,4 ]x[", "[1 ,2 ,3 ,4 ]", "[1\u00ad,2,3,4]", "[１,２,３,４]",
    "<|mis|><|art|><|mis|>", "Misalignment Locations: <|mis|>\nArtifact Locations: <|art|>",
]


def parse_texts(seed, n):
    r = random.Random(seed)
    frags = ["<answer>", "</answer>", "<think>", "</think>", "Semantic Alignment score: ",
             "Aesthetic score: ", "Plausibility score: ", "Overall Impression score: ", ";", ";",
             "0.5", "1", ".", "..", "7", "[", "]", ",", " ", "\n", "-", "+", "12", "3.25", "٣",
             "\u3000", "<|mis|>", "<|art|>", "x", "é", "1.[10,20,30,40];", "[1, 2,3 ,4]"]
    return ["".join(r.choice(frags) for _ in range(r.randint(1, 40))) for _ in range(n)]


def make_text_fixtures():
    d = os.path.join(ROOT, "tests/fixtures/imagedoctor_text")
    os.makedirs(d, exist_ok=True)
    r = random.Random(5)
    with open(os.path.join(d, "parse_cases.jsonl"), "w", encoding="utf-8") as f:
        texts = PARSE_EDGE + parse_texts(6, 400) + [sample_response(r) for _ in range(20)]
        for t in texts:
            ref = reference_parse(t)
            ref["scores"] = [[a, b, repr(v)] for a, b, v in ref["scores"]]
            ref["boxes"] = [[repr(v) for v in b[:4]] + b[4:] for b in ref["boxes"]]
            f.write(json.dumps({"text": t, **ref}, ensure_ascii=False) + "\n")
    floats = [0.58, 1.0, 0.0, -0.0, 0.1 + 0.2, 1 / 3, 1e-05, 0.0001, 0.00012345, 1e16, 1e15 + 0.5,
              123456789012345678.0, 5e-324, 1.7976931348623157e308, 2.5, 100.0, -7.25, 0.75, 0.6,
              float("inf"), float("-inf"), 9.999999999999999e22, 1e22, 0.1, 12345.678]
    with open(os.path.join(d, "floats.jsonl"), "w") as f:
        for v in floats:
            f.write(json.dumps({"hex": v.hex(), "repr": repr(v)}) + "\n")
    with open(os.path.join(d, "build_cases.jsonl"), "w", encoding="utf-8") as f:
        for i in range(12):
            scores = [round(r.random(), r.choice([1, 2, 3])) for _ in range(4)]
            boxes = [[r.randint(-5, 520) + (0.5 if r.random() < 0.2 else 0) for _ in range(4)]
                     for _ in range(r.randint(0, 4))]
            think, paper, tokens = i % 4 != 3, i % 3 == 1, i % 4 != 3
            reasoning = "Semantic Alignment: fine. Therefore, I give it a score of 0.5." if i % 2 else ""
            f.write(json.dumps({"scores": [x.hex() for x in scores], "boxes": boxes,
                                "reasoning": reasoning, "think": think, "paper": paper,
                                "tokens": tokens,
                                "text": build_response(scores, boxes, reasoning, think, paper,
                                                       tokens)}, ensure_ascii=False) + "\n")
    print(f"parser fixtures: {len(texts)} texts")


if __name__ == "__main__":
    make_fixture()
    make_tiny()
    make_text_fixtures()
