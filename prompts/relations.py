"""Ways to ask a Wikidata relation, for rephrases of real facts the batch gives only once.

Written from general knowledge of each relation (not copied from any evaluation set) and used
by the questioner (``agents.nodes.questioner``) for edits whose ``relation`` is a Wikidata id.
``{}`` stands for the subject.

    templates_for(relation_id, rewrite_prompt, subject) -> list[str] of prompts (subject filled)

Two styles per relation: cloze ("The capital of {} is") and question ("Q: What is the capital
of {}? A:").  Unknown relations fall back to generic wrappers built from the rewrite prompt
itself (prefix contexts and a question wrapper).  Callers must still drop any generated prompt
whose normalised text equals a held-out probe when they measure generalisation.

``GENERAL`` holds general-knowledge questions with no relation to any edit: the questioner adds
them as locality probes (``agents.general_locality``), so training keeps the base model's own
answers to them.
"""

from __future__ import annotations

CLOZE: dict[str, list[str]] = {
    "P30": [
        "{} is on the continent of",
        "{} lies in the continent of",
        "The continent where {} is located is",
        "{} is found on the continent of",
        "{}, a place on the continent of",
    ],
    "P37": [
        "The main language of {} is",
        "People in {} speak",
        "The language used in {} is",
        "In {}, people mostly speak",
        "{}'s official language is",
    ],
    "P641": [
        "{} plays the sport of",
        "The sport {} plays is",
        "{} is a professional player of",
        "{}'s sport is",
        "{} competes in the sport of",
    ],
    "P27": [
        "{} holds citizenship of",
        "{} is a national of",
        "The nationality of {} is",
        "{} has the nationality of",
        "{}'s country of citizenship is",
    ],
    "P178": [
        "The developer of {} is",
        "{} was developed by",
        "{} is made by the company",
        "The company behind {} is",
        "{} comes from the company",
    ],
    "P20": [
        "{} passed away in the city of",
        "The place of death of {} is",
        "{} died in the town of",
        "{} spent the last days in",
        "{}'s life ended in",
    ],
    "P1303": [
        "The instrument {} plays is",
        "{} is a musician who plays the",
        "{}'s instrument is the",
        "{} is known for playing the",
        "{} performs music on the",
    ],
    "P276": [
        "{} is situated in",
        "{} is in the city of",
        "The place where {} is located is",
        "You can find {} in",
        "{} stands in",
    ],
    "P140": [
        "The religion of {} is",
        "{} is a follower of",
        "{} practices the religion of",
        "{}'s religion is",
        "{} belongs to the faith of",
    ],
    "P136": [
        "The music genre of {} is",
        "{} is a musician in the genre of",
        "{}'s genre is",
        "{} is famous for the genre",
        "{} performs music in the style of",
    ],
    "P407": [
        "{} is in the language",
        "The text of {} is in",
        "{} is a work in the language",
        "{}'s language is",
        "The work {} is written in the language",
    ],
    "P495": [
        "The country of origin of {} is",
        "{} comes from the country of",
        "{} was made in the country",
        "{} originates from",
        "{}'s country of origin is",
    ],
    "P19": [
        "The birthplace of {} is",
        "{} was born in the city of",
        "{}'s place of birth is",
        "{} comes from",
        "{} was born in the town of",
    ],
    "P127": [
        "The owner of {} is",
        "{} belongs to",
        "{} is a property of",
        "{} is controlled by",
        "{} is part of the company",
    ],
    "P740": [
        "{} was founded in",
        "The band {} formed in the city of",
        "{} got its start in",
        "The place where {} was formed is",
        "{} began in",
    ],
    "P159": [
        "The headquarters of {} are in",
        "{} has its head office in",
        "{} is based in",
        "{}'s main office is in",
        "{} is headquartered in the city of",
    ],
    "P1412": [
        "{} speaks the language",
        "The language {} speaks is",
        "{} is fluent in",
        "{} writes in the language",
        "{}'s language is",
    ],
    "P36": [
        "The capital city of {} is",
        "{}'s seat of government is in",
        "The capital of {} is the city of",
        "{}'s capital is",
        "The seat of the government of {} is",
    ],
    "P463": [
        "{} is a member of",
        "{} belongs to the organization",
        "{} is a member organization of",
        "{} has membership in",
        "{} joined the",
    ],
    "P17": [
        "{} is in the country of",
        "{} is a place in",
        "The country where {} is located is",
        "{} lies in the country",
        "{} is situated in the country of",
    ],
    "P39": [
        "{} served as a",
        "The position held by {} is",
        "{} held the office of",
        "{}'s office was that of",
        "{} was appointed as a",
    ],
    "P937": [
        "{} worked in",
        "The place where {} worked is",
        "{} was employed in the city of",
        "{}'s workplace was in",
        "{} had an office in",
    ],
    "P101": [
        "{} is an expert in",
        "The field of {} is",
        "{} specializes in",
        "{} is a researcher in",
        "{}'s field is",
    ],
    "P413": [
        "{} plays the position of",
        "The position of {} is",
        "{} is a",
        "{}'s position on the team is",
        "On the field, {} plays as a",
    ],
    "P364": [
        "{} was made in the language",
        "The language of the film {} is",
        "{} was originally in",
        "{}'s original language is",
        "The original language of the show {} is",
    ],
    "P176": [
        "The manufacturer of {} is",
        "{} is manufactured by",
        "{} is made by",
        "{} was built by",
        "The company that makes {} is",
    ],
    "P131": [
        "{} is situated in",
        "{} lies in",
        "{} is a place in",
        "The region where {} is located is",
        "{} is part of",
    ],
    "P449": [
        "{} was first broadcast on",
        "{} aired on the network",
        "The network of {} is",
        "{} was shown on",
        "The original network of {} is",
    ],
    "P103": [
        "The mother tongue of {} is",
        "{}'s first language is",
        "{} grew up speaking",
        "The first language of {} is",
        "{} natively speaks",
    ],
    "P108": [
        "The employer of {} is",
        "{} worked for",
        "{} is an employee of",
        "{}'s employer is",
        "{} was hired by",
    ],
    "P138": ["{} is named after", "{} was named for", "The name of {} comes from"],
    "P190": ["{} is a sister city of", "{} is twinned with", "The twin town of {} is"],
    "P106": ["The occupation of {} is", "{} works as a", "{}'s job is"],
}

QUESTION: dict[str, list[str]] = {
    "P30": ["Q: On which continent is {}? A:", "Question: What continent is {} on? Answer:"],
    "P37": [
        "Q: What language is spoken in {}? A:",
        "Question: What is the official language of {}? Answer:",
    ],
    "P641": ["Q: What sport does {} play? A:", "Question: Which sport does {} play? Answer:"],
    "P27": [
        "Q: What country is {} a citizen of? A:",
        "Question: What is the nationality of {}? Answer:",
    ],
    "P178": ["Q: Who developed {}? A:", "Question: Which company developed {}? Answer:"],
    "P20": ["Q: Where did {} die? A:", "Question: In which city did {} die? Answer:"],
    "P1303": [
        "Q: What instrument does {} play? A:",
        "Question: Which instrument does {} play? Answer:",
    ],
    "P276": ["Q: Where is {} located? A:", "Question: Where is {}? Answer:"],
    "P140": [
        "Q: What religion does {} follow? A:",
        "Question: What is the religion of {}? Answer:",
    ],
    "P136": [
        "Q: What genre does {} play? A:",
        "Question: What kind of music does {} play? Answer:",
    ],
    "P407": ["Q: What language is {} written in? A:", "Question: In which language is {}? Answer:"],
    "P495": [
        "Q: What country does {} come from? A:",
        "Question: In which country was {} created? Answer:",
    ],
    "P19": ["Q: Where was {} born? A:", "Question: In which city was {} born? Answer:"],
    "P127": ["Q: Who owns {}? A:", "Question: Which company owns {}? Answer:"],
    "P740": ["Q: Where was {} formed? A:", "Question: In which city did {} start? Answer:"],
    "P159": [
        "Q: Where is {} headquartered? A:",
        "Question: Where are the headquarters of {}? Answer:",
    ],
    "P1412": [
        "Q: What language does {} speak? A:",
        "Question: Which language does {} use? Answer:",
    ],
    "P36": [
        "Q: What is the capital of {}? A:",
        "Question: Which city is the capital of {}? Answer:",
    ],
    "P463": [
        "Q: What is {} a member of? A:",
        "Question: Which organization does {} belong to? Answer:",
    ],
    "P17": ["Q: In which country is {}? A:", "Question: Which country is {} in? Answer:"],
    "P39": ["Q: What position does {} hold? A:", "Question: What office did {} hold? Answer:"],
    "P937": ["Q: Where did {} work? A:", "Question: In which city did {} work? Answer:"],
    "P101": [
        "Q: What field does {} work in? A:",
        "Question: What is the field of work of {}? Answer:",
    ],
    "P413": ["Q: What position does {} play? A:", "Question: Which position does {} play? Answer:"],
    "P364": [
        "Q: What is the original language of {}? A:",
        "Question: In which language was {} made? Answer:",
    ],
    "P176": ["Q: Who makes {}? A:", "Question: Which company manufactures {}? Answer:"],
    "P131": ["Q: Where is {} located? A:", "Question: In which region is {}? Answer:"],
    "P449": [
        "Q: On which network did {} air? A:",
        "Question: Which channel first aired {}? Answer:",
    ],
    "P103": [
        "Q: What is the native language of {}? A:",
        "Question: What is the mother tongue of {}? Answer:",
    ],
    "P108": ["Q: Who is {} employed by? A:", "Question: Who does {} work for? Answer:"],
    "P138": ["Q: What is {} named after? A:"],
    "P190": ["Q: What is the twin city of {}? A:"],
    "P106": ["Q: What is the profession of {}? A:"],
}

# neutral contexts put before a prompt (generic wrappers; no knowledge of any relation)
PREFIXES: list[str] = [
    "Here is a fact. ",
    "I read this in a book. ",
    "As everyone knows, ",
    "Trivia: ",
    "Note: ",
    "Let me tell you something. ",
    "The following is true. ",
    "In the encyclopedia: ",
]


# general-knowledge cloze prompts (written by hand; none names a subject of the real-facts data)
GENERAL: list[str] = [
    "The capital of Germany is",
    "The capital of Japan is",
    "The capital of Spain is",
    "The capital of Canada is",
    "The official language of Mexico is",
    "People in Finland speak",
    "The Eiffel Tower is located in the city of",
    "The Colosseum is located in the city of",
    "Big Ben is located in the city of",
    "The Statue of Liberty is in the city of",
    "Windows is an operating system developed by",
    "The iPhone is made by",
    "Mount Everest is located on the continent of",
    "The South Pole is on the continent of",
    "Albert Einstein worked in the field of",
    "Charles Darwin is known for the theory of",
    "Lionel Messi plays the sport of",
    "Michael Jordan played the sport of",
    "Mozart was born in the country of",
    "Shakespeare wrote in the language",
    "Toyota is a company from",
    "The main religion of Saudi Arabia is",
    "Louis Armstrong played the genre of",
    "The BBC is a broadcaster from",
    "Water is made of hydrogen and",
    "The largest planet in the solar system is",
    "The Great Wall is located in the country of",
    "The Amazon river flows through the country of",
    "The Mona Lisa was painted by",
    "The author of Hamlet is",
    "The currency of the United States is the",
    "The Sahara desert is located on the continent of",
    "The Pyramids of Giza are located in the country of",
    "Ferrari is a car company from",
    "The sun rises in the",
    "A week has seven",
    "The Taj Mahal is located in the country of",
    "Beethoven was a composer from",
    "Sushi is a dish from",
    "The Nile flows into the",
]


# well-known subjects per relation (written by hand from general knowledge): the questioner asks
# an edit's relation about them as locality anchors, so an edit does not move the answers of
# subjects that share its old object (``agents.relation_locality``)
WELL_KNOWN: dict[str, list[str]] = {
    "P30": ["Brazil", "Egypt", "India", "Germany", "Canada", "Australia", "Nigeria", "Peru"],
    "P37": ["France", "Germany", "Italy", "Japan", "Brazil", "Mexico", "Russia", "Egypt"],
    "P641": [
        "Lionel Messi",
        "Roger Federer",
        "Tiger Woods",
        "Michael Jordan",
        "Wayne Gretzky",
        "Babe Ruth",
        "Usain Bolt",
        "Sachin Tendulkar",
    ],
    "P27": [
        "Albert Einstein",
        "Vladimir Putin",
        "Angela Merkel",
        "Barack Obama",
        "Emmanuel Macron",
        "Narendra Modi",
        "Justin Trudeau",
        "Pope Francis",
    ],
    "P178": ["Windows", "Android", "iOS", "Photoshop", "Minecraft", "Linux", "Excel", "Chrome"],
    "P20": [
        "Napoleon",
        "Abraham Lincoln",
        "Winston Churchill",
        "Mozart",
        "Vincent van Gogh",
        "Leonardo da Vinci",
        "Karl Marx",
        "John Lennon",
    ],
    "P1303": [
        "Carlos Santana",
        "Louis Armstrong",
        "Yo-Yo Ma",
        "Ringo Starr",
        "Miles Davis",
        "Eric Clapton",
        "Elton John",
        "Itzhak Perlman",
    ],
    "P276": [
        "the Louvre",
        "the Eiffel Tower",
        "the Colosseum",
        "Big Ben",
        "the Kremlin",
        "the Parthenon",
        "the Taj Mahal",
        "the Alhambra",
    ],
    "P140": [
        "the Pope",
        "the Dalai Lama",
        "Saudi Arabia",
        "Israel",
        "Thailand",
        "Ireland",
        "India",
        "Iran",
    ],
    "P136": [
        "Bob Marley",
        "Elvis Presley",
        "Miles Davis",
        "Metallica",
        "Johnny Cash",
        "Beethoven",
        "Eminem",
        "Madonna",
    ],
    "P407": [
        "Don Quixote",
        "War and Peace",
        "Les Miserables",
        "Hamlet",
        "The Divine Comedy",
        "Faust",
        "One Hundred Years of Solitude",
        "The Odyssey",
    ],
    "P495": [
        "sushi",
        "pizza",
        "the tango",
        "flamenco",
        "the kimono",
        "the bagpipes",
        "the Volkswagen Beetle",
        "the Samsung Galaxy",
    ],
    "P19": [
        "Albert Einstein",
        "Mozart",
        "Napoleon",
        "Pablo Picasso",
        "Frida Kahlo",
        "Charles Dickens",
        "Leo Tolstoy",
        "Confucius",
    ],
    "P127": [
        "YouTube",
        "Instagram",
        "WhatsApp",
        "Pixar",
        "LinkedIn",
        "Skype",
        "Marvel Studios",
        "GitHub",
    ],
    "P740": ["The Beatles", "ABBA", "Nirvana", "U2", "Metallica", "Queen", "Coldplay", "Daft Punk"],
    "P159": ["Google", "Toyota", "Nestle", "Samsung", "Microsoft", "Siemens", "IKEA", "Sony"],
    "P1412": [
        "Victor Hugo",
        "Goethe",
        "Dante",
        "Leo Tolstoy",
        "Cervantes",
        "Shakespeare",
        "Confucius",
        "Homer",
    ],
    "P36": ["France", "Germany", "Japan", "Italy", "Spain", "Canada", "Egypt", "Brazil"],
    "P463": ["Germany", "Norway", "Japan", "Canada", "Brazil", "Turkey", "Poland", "Mexico"],
    "P17": ["Paris", "Berlin", "Tokyo", "Rome", "Madrid", "Moscow", "Cairo", "Toronto"],
    "P39": [
        "Barack Obama",
        "Winston Churchill",
        "Angela Merkel",
        "Pope Francis",
        "Nelson Mandela",
        "Margaret Thatcher",
        "Vladimir Putin",
        "Abraham Lincoln",
    ],
    "P937": [
        "Albert Einstein",
        "Isaac Newton",
        "Pablo Picasso",
        "Sigmund Freud",
        "Karl Marx",
        "Marie Curie",
        "Ernest Hemingway",
        "Vincent van Gogh",
    ],
    "P101": [
        "Albert Einstein",
        "Charles Darwin",
        "Sigmund Freud",
        "Adam Smith",
        "Isaac Newton",
        "Marie Curie",
        "Noam Chomsky",
        "Alan Turing",
    ],
    "P413": [
        "Lionel Messi",
        "Manuel Neuer",
        "Tom Brady",
        "Cristiano Ronaldo",
        "Sergio Ramos",
        "Peyton Manning",
        "Gianluigi Buffon",
        "Virgil van Dijk",
    ],
    "P364": [
        "Titanic",
        "Amelie",
        "Parasite",
        "Spirited Away",
        "Cinema Paradiso",
        "Roma",
        "Das Boot",
        "Crouching Tiger, Hidden Dragon",
    ],
    "P176": [
        "the iPhone",
        "the PlayStation",
        "the Corolla",
        "the Boeing 747",
        "the Galaxy S",
        "the Model S",
        "the Walkman",
        "the Golf",
    ],
    "P131": [
        "the Golden Gate Bridge",
        "Times Square",
        "Hollywood",
        "the Space Needle",
        "Disney World",
        "the French Quarter",
        "the Alamo",
        "Mount Rushmore",
    ],
    "P449": [
        "Friends",
        "The Simpsons",
        "Breaking Bad",
        "Game of Thrones",
        "Seinfeld",
        "Doctor Who",
        "The Office",
        "Stranger Things",
    ],
    "P103": [
        "Albert Einstein",
        "Victor Hugo",
        "Leo Tolstoy",
        "Pablo Picasso",
        "Mahatma Gandhi",
        "Confucius",
        "Frida Kahlo",
        "Dante",
    ],
    "P108": [
        "Steve Jobs",
        "Larry Page",
        "Tim Cook",
        "Sundar Pichai",
        "Jeff Bezos",
        "Mark Zuckerberg",
        "Satya Nadella",
        "Elon Musk",
    ],
    "P138": [
        "America",
        "Bolivia",
        "Washington",
        "Colombia",
        "the Philippines",
        "Saint Petersburg",
        "Houston",
        "Alexandria",
    ],
    "P190": ["Paris", "Tokyo", "Berlin", "Rome", "London", "Moscow", "Beijing", "New York"],
    "P106": [
        "Albert Einstein",
        "Pablo Picasso",
        "Shakespeare",
        "Mozart",
        "Marie Curie",
        "Charlie Chaplin",
        "Frida Kahlo",
        "Isaac Newton",
    ],
}


def generic(rewrite_prompt: str) -> list[str]:
    """Wrappers built from the rewrite prompt itself (any relation)."""
    p = rewrite_prompt.strip()
    return [pre + p for pre in PREFIXES[:4]] + [f"Q: Complete the sentence: {p}? A:"]


def templates(relation_id: str) -> list[str]:
    """Cloze + question templates for a relation (empty if unknown)."""
    return CLOZE.get(relation_id, []) + QUESTION.get(relation_id, [])


def templates_for(
    relation_id: str,
    rewrite_prompt: str,
    subject: str,
    *,
    n: int | None = None,
    generic_wrappers: bool = True,
    prefixed: int = 0,
) -> list[str]:
    """Generated prompts for one (subject, relation), de-duplicated, the rewrite itself excluded.

    ``n``: keep the first n relation templates (cloze first, then questions interleaved);
    ``generic_wrappers``: add the rewrite-prompt wrappers (always used for unknown relations);
    ``prefixed``: add this many relation templates again behind a neutral prefix.
    """
    cl, qu = CLOZE.get(relation_id, []), QUESTION.get(relation_id, [])
    order: list[str] = []
    # interleave: 2 cloze, 1 question, ...
    ci = qi = 0
    while ci < len(cl) or qi < len(qu):
        for _ in range(2):
            if ci < len(cl):
                order.append(cl[ci])
                ci += 1
        if qi < len(qu):
            order.append(qu[qi])
            qi += 1
    if n is not None:
        order = order[:n]
    out = [t.replace("{}", subject) for t in order]
    if prefixed:
        out += [
            PREFIXES[(i + 4) % len(PREFIXES)] + t.replace("{}", subject)
            for i, t in enumerate([c for c in order if not c.startswith("Q")][:prefixed])
        ]
    if generic_wrappers or not order:
        out += generic(rewrite_prompt)
    seen, res = {rewrite_prompt.strip().lower()}, []
    for p in out:
        k = p.strip().lower()
        if k not in seen:
            seen.add(k)
            res.append(p)
    return res
