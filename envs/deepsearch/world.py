"""A seeded, fictional knowledge world for the deep-search task.

Everything is built from ``random.Random(seed)``: invented names from syllables, four entity types
(countries, cities, people, companies) linked by relations, one short passage per entity in the
FlashRAG corpus format (``{"id": str, "contents": "\"Title\"\ntext"}``), and single-hop and two-hop
(bridge) questions with their expert search plan. The train/val split is by question: a seeded draw
sends ~15% of the questions to val, so the splits share no question text and no search chain
(entity + relation sequence), while the world itself (entities, corpus) is shared, as the real QA
benchmarks share Wikipedia. A held-out question asks a new relation chain about known entities,
so answering it takes reading the retrieved passages, not recall of a training answer.
"""
from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

SPLITS = ("train", "val")
DEFAULT_NUM_ENTITIES = 400
VAL_FRACTION = 0.15

# Syllable material for invented names: consonant-vowel syllables, an optional coda on the last one,
# then a suffix that marks the entity type (so names read like place / firm / person names).
_ONSETS = ["b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
           "br", "dr", "gr", "kr", "st", "th", "tr", "vr", "sk"]
_VOWELS = ["a", "e", "i", "o", "u", "a", "e", "o", "ei", "ou"]
_CODAS = ["", "", "", "n", "r", "l", "s", "m", "rn", "nd"]
_SUFFIXES = {
    "country": ["ia", "oria", "and", "esh", "avia", "ova", "eth"],
    "city": ["hold", "vik", "dor", "wen", "mere", "stad", "heim", "gard"],
    "company": ["ix", "trix", "ex", "tron", "ica", "ello", "ant"],
    "river": ["el", "in", "a", "ur", "esk", "on"],
    "currency": ["ar", "un", "ek", "il", "ot"],
    "language": ["ic", "ish", "ese", "an", "i"],
    "region": ["mere", "land", "reach", "aria", "ost"],
    "given": ["a", "o", "en", "is", "an", "ia", "el"],
    "family": ["ick", "ane", "ell", "ard", "ov", "ek", "orn"],
}
_SYLLABLES = {"given": (1, 2), "family": (1, 2), "currency": (1, 1), "language": (1, 2)}

OCCUPATIONS = ["painter", "engineer", "teacher", "architect", "chemist", "sailor", "physician",
               "lawyer", "carpenter", "astronomer", "baker", "poet", "banker", "pilot", "geologist",
               "musician", "botanist", "journalist", "mathematician", "tailor"]
INDUSTRIES = ["shipbuilding", "textiles", "mining", "software", "banking", "brewing", "publishing",
              "railways", "pharmaceuticals", "farming", "glassmaking", "insurance", "aviation",
              "fishing", "robotics"]

# Invented names must not be English words (nor words of our own templates): a small guard list.
_ENGLISH = set("""
a about above after again against all also an and any are as at be because been before being below
between both but by can city company country could did do does doing down during each few for from
further had has have having he her here hers him his how i if in into is it its itself just me more
most my no nor not now of off on once only or other our out over own same she should so some such than
that the their them then there these they this those through to too under until up very was we were
what when where which while who whom why will with would you your capital currency region language
river founded year born works founder headquarters industry people speak lies banks today name
profession located person called known office main home land man men mine more moon note oath odd
idea area aria band bank bane bard bell bore dare dean dell done dove fare fell fore gate hold hand
kind lane last lean lore mane mare mere more nose note pane pare rare rose sane sore tale tone vane
wane ware wore zone data delta sofa soda tuna vista villa diva lava mania media mafia nova opera pasta
pizza salsa santa sierra sonata tempo toga tundra via bonus cargo demo disco ego halo hero hippo judo
logo memo piano radio ratio solo studio tornado trio veto video zero ban den hen men pen ten zen
ruin pin tin sin win bin kin din fin gin sunset garden border wonder under thunder sonar solar lunar
molar polar radar cedar gear dear tear near rear fear bear hear year sugar vinegar nectar
""".split())


@dataclass
class Entity:
    """One world entity; ``attrs`` holds attribute values and the names of related entities."""

    name: str
    kind: str
    attrs: Dict[str, object] = field(default_factory=dict)


class _Namer:
    """Unique pronounceable invented words, drawn from a shared ``random.Random``."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set = set()

    def word(self, kind: str) -> str:
        lo, hi = _SYLLABLES.get(kind, (1, 2))
        for _ in range(1000):
            n = self.rng.randint(lo, hi)
            parts = [self.rng.choice(_ONSETS) + self.rng.choice(_VOWELS) for _ in range(n)]
            suffix = self.rng.choice(_SUFFIXES[kind])
            if suffix[0] in "aeiou":
                coda = self.rng.choice(_CODAS[3:])  # a consonant between vowels: no "Reiix"
            else:
                coda = ""  # and no consonant pile-ups like "rn" + "tr"
            w = ("".join(parts) + coda + suffix).capitalize()
            low = w.lower()
            if 4 <= len(w) <= 12 and low not in self.used and low not in _ENGLISH:
                self.used.add(low)
                return w
        raise RuntimeError(f"could not invent a fresh {kind} name")  # pragma: no cover


def _entity_counts(num_entities: int) -> Dict[str, int]:
    if num_entities < 12:
        raise ValueError(f"num_entities must be >= 12, got {num_entities}")
    countries = max(2, round(0.08 * num_entities))
    cities = max(countries, round(0.27 * num_entities))
    companies = max(2, round(0.25 * num_entities))
    people = num_entities - countries - cities - companies
    return {"country": countries, "city": cities, "person": people, "company": companies}


def _passage(e: Entity) -> str:
    a = e.attrs
    n = e.name
    if e.kind == "country":
        text = (f"{n} is a country in the region of {a['region']}. The capital of {n} is {a['capital']}. "
                f"The currency of {n} is the {a['currency']} and its language is {a['language']}.")
    elif e.kind == "city":
        where = (f"{n} is the capital city of {a['country']}." if a["is_capital"]
                 else f"{n} is a city in the country of {a['country']}.")
        text = (f"{where} It lies on the banks of the river {a['river']}. "
                f"{n} was founded in the year {a['founded']}.")
    elif e.kind == "person":
        art = "an" if str(a["occupation"])[0] in "aeiou" else "a"
        text = (f"{n} is {art} {a['occupation']} by profession. {n} was born in the city of {a['born']}. "
                f"Today {n} works for the company {a['employer']}.")
    else:
        text = (f"{n} is a company in the {a['industry']} industry. It was founded by {a['founder']}. "
                f"The headquarters of {n} are in the city of {a['hq']}.")
    return f"\"{n}\"\n{text}"


class World:
    """Entities, the FlashRAG corpus and the questions of one seeded world."""

    def __init__(self, seed: int, entities: List[Entity]) -> None:
        self.seed = seed
        self.entities = entities
        self.by_name: Dict[str, Entity] = {e.name: e for e in entities}
        self.corpus: List[Dict[str, str]] = [
            {"id": str(i), "contents": _passage(e)} for i, e in enumerate(entities)
        ]
        self._questions = self._make_questions()

    # ------------------------------------------------------------------ questions
    def _make_questions(self) -> List[dict]:
        out: List[dict] = []
        for e in self.entities:
            for text, answer, chain, queries in self._questions_about(e):
                out.append({
                    "id": f"ds{self.seed}-{len(out):05d}",
                    "question": text,
                    "golden_answers": [str(answer)],
                    "hops": len(chain),
                    "chain": chain,
                    "queries": queries,
                    "split": self._split_of(text),
                })
        return out

    def _split_of(self, question: str) -> str:
        # string seeds hash with SHA-512 in `random`, so the draw is the same in every process
        return "val" if random.Random(f"split/{self.seed}/{question}").random() < VAL_FRACTION else "train"

    def _questions_about(self, e: Entity) -> List[Tuple[str, object, List[str], List[str]]]:
        g = self.by_name
        a = e.attrs
        n = e.name
        qs: List[Tuple[str, object, List[str], List[str]]] = []
        if e.kind == "country":
            cap = g[a["capital"]]
            qs += [
                (f"What is the capital of {n}?", a["capital"], [n], [f"{n} capital"]),
                (f"What is the currency of {n}?", a["currency"], [n], [f"{n} currency"]),
                (f"In which region is {n}?", a["region"], [n], [f"{n} region"]),
                (f"What is the language of {n}?", a["language"], [n], [f"{n} language"]),
                (f"In which year was the capital of {n} founded?", cap.attrs["founded"], [n, cap.name],
                 [f"{n} capital", f"{cap.name} founded"]),
                (f"On which river does the capital of {n} lie?", cap.attrs["river"], [n, cap.name],
                 [f"{n} capital", f"{cap.name} river"]),
            ]
        elif e.kind == "city":
            c = g[a["country"]]
            qs += [
                (f"In which country is {n}?", a["country"], [n], [f"{n} country"]),
                (f"On which river does {n} lie?", a["river"], [n], [f"{n} river"]),
                (f"In which year was {n} founded?", a["founded"], [n], [f"{n} founded"]),
                (f"What is the currency of the country in which {n} lies?", c.attrs["currency"],
                 [n, c.name], [f"{n} country", f"{c.name} currency"]),
            ]
            if not a["is_capital"]:
                qs.append((f"What is the capital of the country in which {n} lies?", c.attrs["capital"],
                           [n, c.name], [f"{n} country", f"{c.name} capital"]))
        elif e.kind == "person":
            city = g[a["born"]]
            co = g[a["employer"]]
            qs += [
                (f"In which city was {n} born?", a["born"], [n], [f"{n} born"]),
                (f"What is the profession of {n}?", a["occupation"], [n], [f"{n} profession"]),
                (f"Which company does {n} work for?", a["employer"], [n], [f"{n} works company"]),
                (f"In which country was {n} born?", city.attrs["country"], [n, city.name],
                 [f"{n} born", f"{city.name} country"]),
                (f"On which river lies the city where {n} was born?", city.attrs["river"], [n, city.name],
                 [f"{n} born", f"{city.name} river"]),
                (f"Who founded the company that {n} works for?", co.attrs["founder"], [n, co.name],
                 [f"{n} works company", f"{co.name} founded"]),
                (f"In which industry is the company that {n} works for?", co.attrs["industry"],
                 [n, co.name], [f"{n} works company", f"{co.name} industry"]),
            ]
        else:
            founder = g[a["founder"]]
            hq = g[a["hq"]]
            qs += [
                (f"Who founded {n}?", a["founder"], [n], [f"{n} founded"]),
                (f"In which city are the headquarters of {n}?", a["hq"], [n], [f"{n} headquarters"]),
                (f"In which industry is {n}?", a["industry"], [n], [f"{n} industry"]),
                (f"In which city was the founder of {n} born?", founder.attrs["born"], [n, founder.name],
                 [f"{n} founded", f"{founder.name} born"]),
                (f"In which country are the headquarters of {n}?", hq.attrs["country"], [n, hq.name],
                 [f"{n} headquarters", f"{hq.name} country"]),
            ]
        return qs

    def questions(self, split: Optional[str] = None) -> List[dict]:
        """Questions of ``split`` ("train" / "val"), or all of them for ``None``."""
        if split is None:
            return list(self._questions)
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        return [q for q in self._questions if q["split"] == split]

    # ------------------------------------------------------------------ files
    def save(self, directory: str) -> None:
        """Write ``corpus.jsonl`` and ``<split>.jsonl`` (FlashRAG layout plus our extra fields)."""
        os.makedirs(directory, exist_ok=True)
        _write_jsonl(os.path.join(directory, "corpus.jsonl"), self.corpus)
        for split in SPLITS:
            _write_jsonl(os.path.join(directory, f"{split}.jsonl"), self.questions(split))


def _write_jsonl(path: str, rows: Iterable[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_jsonl(path: str) -> List[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_saved(directory: str) -> Tuple[List[dict], Dict[str, List[dict]]]:
    """Read what :meth:`World.save` wrote: ``(corpus, {split: questions})``."""
    corpus = read_jsonl(os.path.join(directory, "corpus.jsonl"))
    questions = {s: read_jsonl(os.path.join(directory, f"{s}.jsonl"))
                 for s in SPLITS if os.path.exists(os.path.join(directory, f"{s}.jsonl"))}
    return corpus, questions


# ---------------------------------------------------------------------- building
def build_world(seed: int, num_entities: int = DEFAULT_NUM_ENTITIES) -> World:
    """Build the world of ``seed`` deterministically (never touches the global RNG)."""
    rng = random.Random(seed)
    namer = _Namer(rng)
    counts = _entity_counts(num_entities)

    n_regions = max(3, min(8, counts["country"] // 5))
    regions = [namer.word("region") for _ in range(n_regions)]
    countries = [Entity(namer.word("country"), "country") for _ in range(counts["country"])]
    cities = [Entity(namer.word("city"), "city") for _ in range(counts["city"])]
    companies = [Entity(namer.word("company"), "company") for _ in range(counts["company"])]
    given = [namer.word("given") for _ in range(max(8, counts["person"] // 3))]
    people = [Entity(f"{rng.choice(given)} {namer.word('family')}", "person")
              for _ in range(counts["person"])]
    rivers = [namer.word("river") for _ in range(max(4, counts["city"] // 2))]

    for i, c in enumerate(countries):
        c.attrs.update(region=regions[i % n_regions] if i < n_regions else rng.choice(regions),
                       currency=namer.word("currency"), language=namer.word("language"))
    # Every country gets at least one city (its capital); the rest are spread at random.
    for i, city in enumerate(cities):
        country = countries[i] if i < len(countries) else rng.choice(countries)
        city.attrs.update(country=country.name, is_capital=i < len(countries), river=rng.choice(rivers),
                          founded=rng.randint(800, 1950))
        if i < len(countries):
            country.attrs["capital"] = city.name
    for p in people:
        p.attrs.update(occupation=rng.choice(OCCUPATIONS), born=rng.choice(cities).name,
                       employer=rng.choice(companies).name)
    for co in companies:
        co.attrs.update(industry=rng.choice(INDUSTRIES), founder=rng.choice(people).name,
                        hq=rng.choice(cities).name)

    return World(seed, countries + cities + people + companies)


_WORLDS: Dict[Tuple[int, int], World] = {}


def get_world(seed: int, num_entities: int = DEFAULT_NUM_ENTITIES) -> World:
    """Process-wide cache of :func:`build_world` (worlds are read-only once built)."""
    key = (int(seed), int(num_entities))
    if key not in _WORLDS:
        _WORLDS[key] = build_world(*key)
    return _WORLDS[key]
