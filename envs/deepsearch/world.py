"""A seeded, fictional knowledge world: the entities and the FlashRAG corpus of the deep-search task.

Everything is built from ``random.Random(seed)``: invented names from syllables, five entity types
(countries, cities, people, companies, and written works) linked by relations, one short passage per
entity in the FlashRAG corpus format (``{"id": str, "contents": "\"Title\"\ntext"}``), and distractor
passages whose titles nearly repeat an entity's name ("Old Varnhold", "Trelix Foundation", "Kingdom of
Dravia", "Mira Tovick (ship)") and whose facts compete with the real ones, as look-alike Wikipedia
pages do. Works are the long tail: no other passage mentions them. The question families built on
this world live in :mod:`envs.deepsearch.benchmark`.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

DEFAULT_NUM_ENTITIES = 400
DISTRACTOR_FRACTION = 0.25  # share of countries, cities, people and companies with a look-alike page

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
    "work": ["ine", "ande", "ora", "ith", "elle", "ars"],
}
_SYLLABLES = {"given": (1, 2), "family": (1, 2), "currency": (1, 1), "language": (1, 2)}

OCCUPATIONS = ["painter", "engineer", "teacher", "architect", "chemist", "sailor", "physician",
               "lawyer", "carpenter", "astronomer", "baker", "poet", "banker", "pilot", "geologist",
               "musician", "botanist", "journalist", "mathematician", "tailor"]
INDUSTRIES = ["shipbuilding", "textiles", "mining", "software", "banking", "brewing", "publishing",
              "railways", "pharmaceuticals", "farming", "glassmaking", "insurance", "aviation",
              "fishing", "robotics"]
GENRES = ["mystery", "romance", "adventure", "satire", "fantasy", "travel", "history", "poetry"]
WORK_NOUNS = ["Letters", "Chronicle", "Voyage", "Garden", "Saga", "Lantern", "Orchard", "Bridge"]

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
    # works come on top: the long tail, each mentioned by its own passage only
    works = max(2, round(0.12 * num_entities))
    return {"country": countries, "city": cities, "person": people, "company": companies, "work": works}


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _passage(e: Entity, country_region: Dict[str, str]) -> str:
    a = e.attrs
    n = e.name
    if e.kind == "country":
        text = (f"{n}, officially the Republic of {n}, is a country in the region of {a['region']}. "
                f"The capital of {n} is {a['capital']}. "
                f"The currency of {n} is the {a['currency']} and its language is {a['language']}.")
    elif e.kind == "city":
        where = (f"{n} is the capital city of {a['country']}" if a["is_capital"]
                 else f"{n} is a city in the country of {a['country']}")
        text = (f"{where}, in the region of {country_region[a['country']]}. It lies on the banks of the river "
                f"{a['river']}. {n} was founded in the year {a['founded']}.")
    elif e.kind == "person":
        text = (f"{n} is {_article(a['occupation'])} {a['occupation']} by profession. {n} was born in the city of "
                f"{a['born']}. Today {n} works for the company {a['employer']}.")
    elif e.kind == "company":
        text = (f"{n} is a company in the {a['industry']} industry. It was founded by {a['founder']}. "
                f"The headquarters of {n} are in the city of {a['hq']}.")
    else:
        text = (f"{n} is {_article(a['genre'])} {a['genre']} novel written by {a['author']}. "
                f"It was first published in the year {a['published']}.")
    return f"\"{n}\"\n{text}"


def _distractor(e: Entity, rng: random.Random, cities: List[Entity]) -> Tuple[str, str]:
    """``(title, text)`` of a look-alike page of ``e``: a near-duplicate title, a competing fact."""
    n = e.name
    other_city = rng.choice([c for c in cities if c.name != n]).name
    year = rng.randint(800, 1950)
    if e.kind == "country":
        return (f"Kingdom of {n}", f"The Kingdom of {n} was the state that came before modern {n}. "
                f"Its royal seat was the city of {other_city}, and it ended in the year {year}.")
    if e.kind == "city":
        return (f"Old {n}", f"Old {n} is the historic quarter of {n}. "
                f"Its oldest church was built in the year {year}.")
    if e.kind == "person":
        return (f"{n} (ship)", f"The {n} is a ferry named after {n}. It was launched in the year {year} "
                f"and sails from the port of {other_city}.")
    return (f"{n} Foundation", f"The {n} Foundation is a charity funded by {n}. "
            f"Its offices are in the city of {other_city}.")


class World:
    """Entities, distractors and the FlashRAG corpus of one seeded world.

    ``corpus[i]`` is the passage of ``entities[i]`` for ``i < len(entities)``; the distractor pages
    follow. ``passage_of[name]`` is an entity's passage row.
    """

    def __init__(self, seed: int, entities: List[Entity], distractors: List[Tuple[str, str, str]]) -> None:
        self.seed = seed
        self.entities = entities
        self.by_name: Dict[str, Entity] = {e.name: e for e in entities}
        self.rivers = {str(e.attrs["river"]) for e in entities if e.kind == "city"}
        self.languages = {str(e.attrs["language"]) for e in entities if e.kind == "country"}
        region = {e.name: str(e.attrs["region"]) for e in entities if e.kind == "country"}
        pages = [_passage(e, region) for e in entities] + [f"\"{t}\"\n{x}" for _, t, x in distractors]
        self.corpus: List[Dict[str, str]] = [{"id": str(i), "contents": c} for i, c in enumerate(pages)]
        self.passage_of: Dict[str, Dict[str, str]] = {e.name: self.corpus[i] for i, e in enumerate(entities)}
        #: entity name -> title of its look-alike page, for the entities that have one
        self.lookalike: Dict[str, str] = {name: title for name, title, _ in distractors}

    def of_kind(self, kind: str) -> List[Entity]:
        return [e for e in self.entities if e.kind == kind]


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
    works = [Entity(f"The {namer.word('work')} {rng.choice(WORK_NOUNS)}", "work") for _ in range(counts["work"])]

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
    for w in works:
        w.attrs.update(genre=rng.choice(GENRES), author=rng.choice(people).name, published=rng.randint(1500, 2000))

    # a separate stream, so the look-alike pages never shift the entities of a seed
    drng = random.Random(f"distractors/{seed}")
    distractors = [(e.name, *_distractor(e, drng, cities)) for e in countries + cities + people + companies
                   if drng.random() < DISTRACTOR_FRACTION]
    return World(seed, countries + cities + people + companies + works, distractors)


_WORLDS: Dict[Tuple[int, int], World] = {}


def get_world(seed: int, num_entities: int = DEFAULT_NUM_ENTITIES) -> World:
    """Process-wide cache of :func:`build_world` (worlds are read-only once built)."""
    key = (int(seed), int(num_entities))
    if key not in _WORLDS:
        _WORLDS[key] = build_world(*key)
    return _WORLDS[key]
