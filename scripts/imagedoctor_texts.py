"""ImageDoctor's instruction prompts (spec imagedoctor.md 6.1, 5.3) and a generator of responses
in the format data/imagedoctor_text.c builds (code style: `1.[x1,y1,x2,y2];` one per line,
Locations lines carrying <|mis|> / <|art|>). Used to make the tiny preset's tokenizer corpus.
data/imagedoctor_text.c holds the same prompt strings; its test checks them against the spec."""
import random

PROMPT_STAGE2 = (
    "Given a caption and an image generated based on this caption, please analyze the provided "
    "image in detail. Evaluate it on various dimensions including Semantic Alignment (How well the "
    "image content corresponds to the caption), Aesthetics (composition, color usage, and overall "
    "artistic quality), Plausibility (realism and attention to detail), and Overall Impression "
    "(General subjective assessment of the image's quality). For each evaluation dimension, "
    "provide a score between 0-1 and provide a concise rationale for the score. Use a "
    "chain-of-thought process to detail your reasoning steps, and enclose all potential important "
    "areas and detailed reasoning within <think> and </think> tags. The important areas are "
    "represented in following format: \\\u201d I need to focus on the bounding box area. Proposed "
    "regions (xyxy): ..., which is an enumerated list in the exact format:1.[x1,y1,x2,y2];\n"
    "2.[x1,y1,x2,y2];\n3.[x1,y1,x2,y2]\u2026 Here, x1,y1 is the top-left corner, and x2,y2 is the "
    "bottom-right corner. Then, within the <answer> and </answer> tags, summarize your assessment "
    "in the following format: \"Semantic Alignment score: ... \nMisalignment Locations: ...\n"
    "Aesthetic score: ...\nPlausibility score: ... nArtifact Locations: ...\nOverall Impression "
    "score: ...\". No additional text is allowed in the answer section.\n\n Your actual evaluation "
    "should be based on the quality of the provided image.**\n\nYour task is provided as follows:\n"
    "Text Caption: [{caption}]"
)
assert len(PROMPT_STAGE2.encode("utf-8")) == 1453

_HEAD = PROMPT_STAGE2[: PROMPT_STAGE2.index("provide a score between 0-1") + len("provide a score between 0-1")]
_TAIL = PROMPT_STAGE2[PROMPT_STAGE2.index(" is allowed in the answer section."):]
PROMPT_STAGE1 = (
    _HEAD + ". Within the <answer> and </answer> tags, summarize your assessment in the following "
    "format: \"Semantic Alignment score: ...\nMisalignment Locations: ...\nAesthetic score: ...\n"
    "Plausibility score: ...\nArtifact Locations: ...\nOverall Impression score: ...\". "
    "No additional text" + _TAIL
)

GRPO_PREFIX = (
    "First thinks about the reasoning process in the mind and then provides the user with the "
    "answer. The reasoning process and answer are enclosed within <think> </think> and <answer> "
    "</answer> tags, respectively, i.e., <think> reasoning process here </think><answer> answer "
    "here </answer>\n"
)

SUBJECTS = ("cat dog horse woman man child robot car house tree flower bird cube sphere lamp chair "
            "table cup bottle boat bicycle mountain river city street astronaut dragon").split()
ADJ = ("red blue green yellow small large old young wooden shiny dark bright wet golden purple "
       "striped fluffy broken glowing tiny giant").split()
PLACES = ("on a table", "in a park", "at night", "under the sea", "on the moon", "in the snow",
          "next to a window", "in a kitchen", "on a beach", "in a forest", "in the rain")
ACTIONS = ("holding a cup", "reading a book", "playing guitar", "riding a bike", "smiling",
           "jumping over a fence", "eating an apple", "looking at the camera")


def sample_caption(r):
    s = f"a {r.choice(ADJ)} {r.choice(SUBJECTS)}"
    if r.random() < 0.5:
        s += " " + r.choice(ACTIONS)
    if r.random() < 0.7:
        s += " " + r.choice(PLACES)
    if r.random() < 0.3:
        s += f" and a {r.choice(ADJ)} {r.choice(SUBJECTS)}"
    return s


def _score(r):
    return str(round(r.random(), r.choice([1, 2, 2, 2])))


def build_response(scores, boxes, reasoning, think=True, paper=False, tokens=True):
    """The format data/imagedoctor_text.c builds (idoc_build_response); scores as str(float)."""
    sc = [repr(float(v)) for v in scores]

    def coord(v):
        return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else repr(float(v))

    out = ""
    if think:
        items = [f"{i + 1}{':' if paper else '.'}[{','.join(coord(c) for c in b)}]"
                 for i, b in enumerate(boxes)]
        listing = ("; ".join(items) + "." if paper else "\n".join(x + ";" for x in items)) \
            if items else "none."
        out += f"<think>I need to focus on the bounding box area. Proposed regions (xyxy): {listing}"
        if reasoning:
            out += "\n\n" + reasoning
        out += "</think>\n\n"
    if tokens and not paper:
        out += (f"<answer>Semantic Alignment score: {sc[0]};\nMisalignment Locations: <|mis|>\n"
                f"Aesthetic score: {sc[1]};\nPlausibility score: {sc[2]};\n"
                f"Artifact Locations: <|art|>\nOverall Impression score: {sc[3]}</answer>")
    else:
        out += (f"<answer>Semantic Alignment score: {sc[0]}; Aesthetic score: {sc[1]}; "
                f"Plausibility score: {sc[2]}; Overall Impression score: {sc[3]}"
                + (" <|mis|><|art|>" if tokens else "") + "</answer>")
    return out


def sample_response(r):
    boxes = []
    for _ in range(r.randint(0, 4)):
        x1, y1 = r.randint(0, 400), r.randint(0, 400)
        boxes.append((x1, y1, x1 + r.randint(8, 112), y1 + r.randint(8, 112)))
    s = [round(r.random(), r.choice([1, 2, 2, 2])) for _ in range(4)]
    cap = sample_caption(r)
    reasoning = (
        f"Semantic Alignment: The image shows {cap}, but the {r.choice(SUBJECTS)} is "
        f"{r.choice(['missing', 'distorted', 'in the wrong place', 'well depicted'])}. Therefore, "
        f"I give it a score of {s[0]}.\n\n"
        f"Aesthetics: The composition is {r.choice(['balanced', 'cluttered', 'flat', 'vibrant'])} "
        f"and the lighting is {r.choice(['soft', 'harsh', 'natural', 'dim'])}. Therefore, I give it "
        f"a score of {s[1]}.\n\n"
        f"Plausibility: The {r.choice(['hands', 'face', 'texture', 'shadow', 'fingers'])} "
        f"{r.choice(['look unnatural', 'are realistic', 'show artifacts', 'are blurry'])}. "
        f"Therefore, I give it a score of {s[2]}.\n\n"
        f"Overall Impression: {r.choice(['Good', 'Weak', 'Mixed', 'Strong'])} overall quality. "
        f"Therefore, I give it a score of {s[3]}."
    )
    think = r.random() < 0.8
    return build_response(s, boxes, reasoning, think=think, tokens=think)


# ---- the reference's parsing (spec imagedoctor.md 5.5), used to make the parser fixtures --------
import re  # noqa: E402

SCORE_PATTERNS = [r"Semantic Alignment score: ([0-9.]+);", r"Aesthetic score: ([0-9.]+);",
                  r"Plausibility score: ([0-9.]+);", r"Overall Impression score: ([0-9.]+)"]
NUM = r"[+-]?\d+(\.\d+)?"
BOX_RE = re.compile(r"\[\s*(" + NUM + r")\s*,\s*(" + NUM + r")\s*,\s*(" + NUM + r")\s*,\s*("
                    + NUM + r")\s*\]")


def reference_parse(text):
    """{"answer": bool, "scores": [[found, valid, value] x4], "boxes": [[x1,y1,x2,y2,b,e]]}."""
    m = re.search(r"<answer>(.*?)</answer>", text, re.DOTALL)
    scores = []
    for pat in SCORE_PATTERNS:
        found, valid, value = False, False, 0.0
        if m:
            mm = re.search(pat, m.group(1))
            if mm:
                found = True
                try:
                    value, valid = float(mm.group(1)), True
                except ValueError:
                    value = 0.0
        scores.append([found, valid, value])
    boxes = []
    for b in BOX_RE.finditer(text):
        vals = [float(b.group(k)) for k in (1, 3, 5, 7)]
        start = len(text[:b.start()].encode("utf-8"))
        end = len(text[:b.end()].encode("utf-8"))
        boxes.append(vals + [start, end])
    return {"answer": m is not None, "scores": scores, "boxes": boxes}
