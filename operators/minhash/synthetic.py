"""A seeded generator of English and Chinese documents with planted near-duplicates.

Tests and `benchmarks/dedupe.py` use it to measure precision and recall of near-duplicate
detection. Each original document gets zero or more variants made by random word edits
(replacements, insertions, deletions), an inserted or deleted sentence, swapped paragraphs and a
changed header or footer. Originals share header and footer templates, so unrelated documents
still have some text in common, as reports from one organisation do.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# Frequent English function words, mixed into generated text at a high rate like real prose.
_ENGLISH_FUNCTION_WORDS = (
    "the of and to a in is that for it as was with be by on not he this are or his from at which "
    "but have an they you were her she there been one all we their has would when if so no will "
    "more can its out into than them only other new some could these two may first then do any"
).split()
_SYLLABLES = (
    "ba be bi bo bu ca ce ci co cu da de di do du fa fe fi fo ga ge go ha he hi ho ka ke ki ko la "
    "le li lo lu ma me mi mo mu na ne ni no nu pa pe pi po ra re ri ro ru sa se si so su ta te ti "
    "to tu va ve vi vo za ze zi zo tra pre sto ling ment tion ver and est ous ble"
).split()
# Common Chinese characters. Generated words are runs of one to three of them.
_CHINESE_CHARS = (
    "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对"
    "可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公"
    "同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正"
    "名定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并"
    "内加化由却代军产入先山五太水万市眼体别处总才场师书比住员九笑性通目华报立马命张活难神数件安表"
    "原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制解各任至清物台象记边共风"
    "战干接它许八特觉望直服毛林题建南度统色字请交爱让认算论百吃义科怎元社术结六功指思非流每青管夫"
)
_ENGLISH_HEADERS = (
    "Quarterly report {n} of the regional office",
    "Meeting notes {n} prepared for the board",
    "Internal memo {n} from the operations team",
)
_ENGLISH_FOOTERS = (
    "Page {n} confidential do not distribute",
    "Printed on day {n} for internal use only",
)
_CHINESE_HEADERS = ("第{n}号季度工作报告", "会议纪要第{n}期", "运营部门内部通知{n}")
_CHINESE_FOOTERS = ("第{n}页 内部资料 请勿外传", "打印编号{n} 仅供内部使用")


@dataclass
class SyntheticDocument:
    doc_id: str
    text: str
    language: str  # "en" or "zh"
    group: int  # documents with the same group are planted near-duplicates of each other
    is_original: bool


class _Writer:
    """Text of one language built from a Zipf-weighted vocabulary."""

    def __init__(self, language: str, rng: random.Random) -> None:
        self.language = language
        self.rng = rng
        if language == "en":
            content = sorted(
                {
                    rng.choice(_SYLLABLES) + rng.choice(_SYLLABLES) + rng.choice(("", *_SYLLABLES))
                    for _ in range(3000)
                }
            )
            rng.shuffle(content)
            self.vocabulary = _ENGLISH_FUNCTION_WORDS + content
        elif language == "zh":
            words = {
                "".join(rng.choices(_CHINESE_CHARS, k=rng.choice((1, 2, 2, 3))))
                for _ in range(4000)
            }
            self.vocabulary = sorted(words)
            rng.shuffle(self.vocabulary)
        else:
            raise ValueError(f"unsupported language {language!r}; expected 'en' or 'zh'")
        self.weights = [1.0 / (rank + 1) ** 0.9 for rank in range(len(self.vocabulary))]

    def words(self, count: int) -> list[str]:
        return self.rng.choices(self.vocabulary, weights=self.weights, k=count)

    def sentence(self) -> list[str]:
        return self.words(self.rng.randint(8, 20))

    def paragraph(self) -> list[list[str]]:
        return [self.sentence() for _ in range(self.rng.randint(3, 6))]

    def header(self) -> str:
        templates = _ENGLISH_HEADERS if self.language == "en" else _CHINESE_HEADERS
        return self.rng.choice(templates).format(n=self.rng.randint(1, 9999))

    def footer(self) -> str:
        templates = _ENGLISH_FOOTERS if self.language == "en" else _CHINESE_FOOTERS
        return self.rng.choice(templates).format(n=self.rng.randint(1, 9999))

    def render(self, header: str, paragraphs: list[list[list[str]]], footer: str) -> str:
        if self.language == "en":
            body = [" ".join(" ".join(s).capitalize() + "." for s in p) for p in paragraphs]
        else:
            body = ["".join("，".join(_split_clauses(s)) + "。" for s in p) for p in paragraphs]
        return "\n\n".join([header, *body, footer])


def _split_clauses(sentence: list[str]) -> list[str]:
    middle = len(sentence) // 2
    return ["".join(sentence[:middle]), "".join(sentence[middle:])]


@dataclass
class _Draft:
    header: str
    paragraphs: list[list[list[str]]]
    footer: str

    def copy(self) -> _Draft:
        return _Draft(self.header, [[list(s) for s in p] for p in self.paragraphs], self.footer)


def _make_variant(
    draft: _Draft, writer: _Writer, rng: random.Random, max_edit_rate: float
) -> _Draft:
    """Return a near-duplicate of `draft` with a random subset of the planted edits."""
    variant = draft.copy()
    sentences = [s for p in variant.paragraphs for s in p]
    total_words = sum(len(s) for s in sentences)

    for _ in range(round(total_words * rng.uniform(0.0, max_edit_rate))):
        sentence = rng.choice(sentences)
        position = rng.randrange(len(sentence))
        operation = rng.choice(("replace", "insert", "delete"))
        if operation == "replace":
            sentence[position] = writer.words(1)[0]
        elif operation == "insert":
            sentence.insert(position, writer.words(1)[0])
        elif len(sentence) > 1:
            del sentence[position]

    if rng.random() < 0.3:
        paragraph = rng.choice(variant.paragraphs)
        paragraph.insert(rng.randrange(len(paragraph) + 1), writer.sentence())
    if rng.random() < 0.3:
        paragraph = max(variant.paragraphs, key=len)
        del paragraph[rng.randrange(len(paragraph))]
    if rng.random() < 0.3 and len(variant.paragraphs) > 1:
        first, second = rng.sample(range(len(variant.paragraphs)), 2)
        variant.paragraphs[first], variant.paragraphs[second] = (
            variant.paragraphs[second],
            variant.paragraphs[first],
        )
    if rng.random() < 0.3:
        variant.header = writer.header()
    if rng.random() < 0.3:
        variant.footer = writer.footer()
    return variant


def generate_corpus(
    num_originals: int,
    seed: int = 0,
    duplicate_share: float = 0.3,
    max_variants: int = 3,
    paragraphs: tuple[int, int] = (6, 10),
    max_edit_rate: float = 0.02,
) -> list[SyntheticDocument]:
    """Generate `num_originals` documents, half English and half Chinese, plus planted variants.

    A share `duplicate_share` of the originals gets 1 to `max_variants` variants, each with up to
    `max_edit_rate` of its words edited. Documents come in a seeded random order with ids
    "doc-000000", "doc-000001", ... in that order.
    """
    rng = random.Random(seed)
    writers = {
        language: _Writer(language, random.Random(f"{seed}-{language}"))
        for language in ("en", "zh")
    }
    corpus: list[tuple[str, str, int, bool]] = []
    for group in range(num_originals):
        language = "en" if group % 2 == 0 else "zh"
        writer = writers[language]
        draft = _Draft(
            writer.header(),
            [writer.paragraph() for _ in range(rng.randint(*paragraphs))],
            writer.footer(),
        )
        corpus.append(
            (writer.render(draft.header, draft.paragraphs, draft.footer), language, group, True)
        )
        if rng.random() < duplicate_share:
            for _ in range(rng.randint(1, max_variants)):
                variant = _make_variant(draft, writer, rng, max_edit_rate)
                text = writer.render(variant.header, variant.paragraphs, variant.footer)
                corpus.append((text, language, group, False))
    rng.shuffle(corpus)
    return [
        SyntheticDocument(f"doc-{index:06d}", text, language, group, is_original)
        for index, (text, language, group, is_original) in enumerate(corpus)
    ]


def duplicate_precision_recall(
    corpus: list[SyntheticDocument], duplicate_of: dict[str, str]
) -> tuple[float, float]:
    """Score dropped documents against the planted groups.

    `duplicate_of` maps each dropped doc_id to its keeper. A drop is correct when the keeper is in
    the same planted group. Recall divides the correct drops by the number of documents that had
    to go: the group size minus one, summed over groups.
    """
    group_of = {doc.doc_id: doc.group for doc in corpus}
    group_sizes: dict[int, int] = {}
    for doc in corpus:
        group_sizes[doc.group] = group_sizes.get(doc.group, 0) + 1
    expected = sum(size - 1 for size in group_sizes.values())
    correct = sum(
        1 for dropped, keeper in duplicate_of.items() if group_of[dropped] == group_of[keeper]
    )
    precision = correct / len(duplicate_of) if duplicate_of else 1.0
    recall = correct / expected if expected else 1.0
    return precision, recall
