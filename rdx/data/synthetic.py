"""A seeded grammar corpus that makes the paper's experiment meaningful at tiny scale.

Two tasks, as the paper's datasets: ``sentiment`` (Yelp-like review sentences: negative,
positive) and ``topic`` (AG-News-like news sentences: world, sport, business, sci_tech).

Every sentence is ``opening + body + tail``. The openings ("the pasta here was ...",
"officials said on monday that ...") are shared by all attributes of a task, so a 4-token
prefix does not reveal the attribute and the behavior LM continues it with a mix of
attribute-bearing, neutral and other-attribute words: reward varies across samples.
The attribute lives in the body and tail, with graded strength (strong and mild words,
negations such as "not bad at all", mixed "... but ..." clauses, words shared between
topics such as tech companies in business news).

Labels: each label slot gets a *neutral* sentence (no attribute content, so its label is
random w.r.t. the text) with probability ``neutral_frac``; otherwise its content is from
another attribute of the task with probability ``noise`` (label noise) and from its own
attribute else. A classifier can therefore reach at most about
``(1 - neutral_frac) * (1 - noise) + neutral_frac / K`` held-out accuracy (K classes):
0.68 for sentiment, 0.53 for topic at the defaults (on attribute-bearing sentences alone,
0.95).

Why these defaults (measured, see README "The embedded default"): with noise 0.1 and
neutral_frac 0.3, about 40% of β's samples already sat at the reward model's ceiling, and
every arm (no dropout, random, quantile) reached that ceiling within two epochs: the reward
axis could not tell them apart. With attribute content in only 40% of sentences and a higher
ceiling, reaching a high reward takes selecting the few high-reward samples, which is the
effect the paper studies.
"""

from __future__ import annotations

import random
import re

from rdx.data.corpus import ATTRIBUTES, Corpus, Example

# Rules: name -> alternatives separated by "|"; "{name}" expands recursively. A repeated
# alternative is a more likely one. Punctuation is a separate token, as in the Yelp files.
_RULES = """
food = pizza|pasta|burger|steak|salad|soup|sushi|pho|tacos|curry|ramen|sandwich|fried chicken
  |fries|coffee|dessert|seafood|noodles|wings|omelette|cheesecake|pancakes|burrito|dumplings
  |lasagna|brisket|pad thai|fish and chips|mac and cheese|bagel|waffles|gelato|nachos|risotto
place = restaurant|place|cafe|bar|diner|bakery|bistro|pub|food truck|buffet|taqueria|steakhouse
aspect = service|staff|waiter|waitress|food|menu|atmosphere|music|patio|owner|manager
  |bartender|price|portion|wait|parking|decor|bathroom|host|delivery|lighting|coffee
person = wife|husband|friend|sister|brother|mom|dad|boss|kids|family|coworkers|roommate
  |girlfriend|boyfriend|parents|neighbor
day = monday|tuesday|wednesday|thursday|friday|saturday|sunday
when = last week|last night|yesterday|this morning|a few days ago|last month|on {day}
  |over the weekend|on {day} night|after work|before the game|on my birthday|for our anniversary
meal = lunch|dinner|breakfast|brunch|a quick bite|happy hour|drinks|dessert|takeout|a late snack
num = two|three|four|five|six|ten|twelve|fifteen|twenty|thirty|forty|fifty
deg = really|very|so|pretty|quite|absolutely|incredibly|truly|just|honestly|super|rather
sentiment_open = the {food} here was|the {food} here is|i came here for {meal} {when} and the
  {aspect} was|we stopped by for {meal} {when} and the {aspect} was|my {person} and i tried the
  {food} {when} and it was|i ordered the {food} with a side of {food} and it was|overall the
  {aspect} at this {place} was|we have been here {num} times and the {food} is always|after
  waiting {num} minutes the {food} finally came out and it was|i have to say the {aspect}
  was|this {place} is close to my office and the {aspect} is|the {aspect} at this {place}
  was|we came in {when} with my {person} and the {food} was|first time at this {place} and
  the {aspect} was
pos_strong = amazing|excellent|fantastic|wonderful|perfect|outstanding|awesome|incredible
  |phenomenal|superb|spectacular|delicious
pos_mild = good|nice|decent|solid|fine|pleasant|enjoyable|lovely|impressive|reasonable|fresh
  |tasty
neg_strong = terrible|awful|horrible|dreadful|atrocious|pathetic|abysmal|appalling|disgusting
  |nasty|horrendous|inedible
neg_mild = mediocre|disappointing|sloppy|overpriced|poor|lousy|underwhelming|forgettable
  |uninspired|subpar|bland|stale
neu_adj = different|new|typical|simple|standard|ordinary|familiar|traditional|small|large
  |spicy|sweet
positive_body = {deg} {pos_strong}|{deg} {pos_strong}|{deg} {pos_mild}|{pos_mild} enough|not
  {neg_mild} at all|not bad at all|{deg} {pos_strong} but the {aspect} was a bit {neg_mild}
negative_body = {deg} {neg_strong}|{deg} {neg_strong}|{deg} {neg_mild}|{neg_mild} again|not
  {pos_mild} at all|not good at all|{deg} {neg_strong} but the {aspect} was {pos_mild}
sentiment_neutral_body = {deg} {neu_adj}|{deg} {neu_adj}|{neu_adj} as usual|the same as
  {when}|about what you would expect from a {place}|different from the last time|typical
  for a {place} in this area
positive_tail = , and we will definitely be back|, so i would recommend it to anyone|, and the
  {aspect} was {deg} {pos_mild} too|and the {aspect} made us feel welcome|!|, and we left
  {deg} happy|, five stars
negative_tail = , and we will never come back|, so i would not recommend it|, and the {aspect}
  was {deg} {neg_mild} too|and we waited {num} minutes for the check|!|, and we left {deg}
  disappointed|, one star
sentiment_neutral_tail = , and we sat on the patio|and we left around {num}|before we went
  home|, just like {when}|and we paid with cash|, and the {place} was {busy}|while my {person}
  ordered the {food}|and we took the rest home
busy = busy|quiet|full|half empty|packed with students|open late
country = iraq|iran|israel|china|russia|france|germany|japan|sudan|pakistan|afghanistan|india
  |ukraine|north korea|syria|egypt|kenya|brazil|mexico|britain|spain|italy|turkey|lebanon
region = gaza|darfur|kashmir|baghdad|the west bank|chechnya|the balkans|kabul|fallujah|beirut
city = london|paris|geneva|tokyo|moscow|new york|washington|beijing|berlin|cairo|sydney|madrid
source = reuters|the associated press|afp|local media|state television|the bbc|a newspaper
topic_open = officials said on {day} that|according to a report on {day} ,|in a statement
  released {day} ,|a spokesman confirmed on {day} that|{source} reported on {day} that|earlier
  this {period} ,|sources close to the matter said that|it was announced late {day}
  that|people familiar with the plan said that|analysts said on {day} that|in {city} on
  {day} ,|for the first time this {period} ,|late on {day} night ,
period = week|month|year|season|summer|spring
world_body = {world_subj} {world_verb} {world_obj}|{world_subj} {world_verb} {world_obj}|{num}
  people were killed in a bomb attack in {region}|voters in {country} went to the polls in a
  disputed election|thousands of refugees fled the fighting in {region}
world_subj = the president of {country}|the prime minister of {country}|rebel forces in
  {region}|the united nations|un peacekeepers|the foreign minister of {country}|troops in
  {region}|the ruling party in {country}|opposition leaders in {country}|diplomats from
  {country}|the government of {country}
world_verb = agreed to|rejected|called for|condemned|signed|postponed|demanded|backed|opposed
world_obj = a ceasefire in {region}|new elections|peace talks with {country}|sanctions against
  {country}|the release of hostages|a treaty on nuclear weapons|a vote on the new
  constitution|the withdrawal of troops from {region}|talks on {country} 's nuclear program
sport_body = {team} {sport_verb} {team} {score} in the {competition}|{team} {sport_verb} {team}
  {score} in the {competition}|the striker of {team} scored twice as they won the
  {competition}|the star quarterback threw {score_word} touchdown passes against
  {team}|{athlete} won the gold medal in the {event}|{athlete} reached the semifinals of
  the {tournament}|the coach of {team} was fired after a {num} game losing streak
team = the yankees|the red sox|the lakers|the celtics|the patriots|the eagles|chelsea
  |arsenal|real madrid|barcelona|the giants|the cubs|the knicks|liverpool|the steelers
  |manchester united|the dolphins|ac milan
sport_verb = beat|defeated|lost to|drew with|edged|routed|crushed|held off
score = {score_word} to {score_word}|{score_word} - {score_word}
score_word = one|two|three|four|five|six|seven
competition = league|cup final|playoffs|world series|super bowl|champions league|season opener
athlete = the american sprinter|the swiss tennis star|the olympic champion|the veteran
  golfer|the young swimmer|the british cyclist|the world number one
event = 100 meters|marathon|200 meters freestyle|pole vault|road race|decathlon
tournament = us open|wimbledon|french open|masters|australian open|ryder cup
business_body = shares of {company} {move} {num} percent after {biz_event}|shares of {company}
  {move} {num} percent after {biz_event}|{company} reported a {num} percent {change} in
  quarterly profit|the central bank raised interest rates by a quarter point|oil prices
  {move} to {num} dollars a barrel|{company} agreed to buy {company} for {num} billion
  dollars|investors sold stocks amid fears of {biz_fear}|the dollar fell against the euro
  as {biz_fear} grew|{company} said it would cut {num} thousand jobs
company = {techco}|wal-mart|exxon|boeing|general motors|citigroup|ford|pfizer|disney|kmart
  |delta air lines|merck|time warner|ebay|sears
techco = microsoft|google|apple|ibm|intel|sony|yahoo|nokia|oracle|dell|hp|amd|motorola
move = rose|fell|jumped|slid|climbed|dropped|surged|tumbled
change = rise|drop|gain|decline|jump
biz_event = the company beat earnings forecasts|a profit warning|a merger announcement|the
  chief executive resigned|a downgrade by analysts|strong holiday sales|a court ruling
biz_fear = inflation|a slowing economy|higher oil prices|rising interest rates|weak demand
sci_tech_body = researchers at {univ} {sci_verb} {sci_obj}|researchers at {univ} {sci_verb}
  {sci_obj}|{techco} released a new version of its {product}|nasa launched a probe to
  study {planet}|scientists discovered {discovery}|a new computer virus infected {num}
  thousand computers|{techco} fixed {num} security flaws in its {product}|astronomers found a
  new planet orbiting a distant star|{techco} unveiled a faster chip for its {product}
univ = mit|stanford|harvard|oxford|caltech|cambridge|the university of tokyo|berkeley
sci_verb = developed|unveiled|tested|built|designed|demonstrated
sci_obj = a new {tech}|a cheaper {tech}|a tiny {tech}|a {tech} that runs on {power}
tech = robot|battery|laser|sensor|microchip|solar cell|search engine|wireless network|vaccine
power = sunlight|hydrogen|body heat|radio waves
product = operating system|web browser|search engine|music player|smartphone|laptop|software
planet = mars|saturn|jupiter|venus|a comet|the moon
discovery = a new species of frog|water ice on mars|a gene linked to obesity|fossils of a
  feathered dinosaur|a black hole at the center of the galaxy
topic_neutral_body = the meeting would take place next week in {city}|more details would be
  released later this {period}|the decision was expected by the end of the {period}|the plan
  had been delayed for {num} months|nobody was available for comment|the report was based on
  interviews with {num} people|a final announcement would be made in {city}
world_tail = amid rising tensions in the region|after weeks of violence|, diplomats
  said|despite protests in {city}
sport_tail = in front of a sellout crowd|to stay top of the table|, the coach said|on a cold
  night in {city}
business_tail = as investors weighed {biz_fear}|in early trading on wall street|, analysts
  said|despite {biz_fear}
sci_tech_tail = in a paper published in the journal nature|ahead of a launch planned for next
  {period}|, the researchers said|using a grant from the government
topic_neutral_tail = , according to {source}|, the report said|on {day}|, a spokesman said
  |, sources said
"""


def _parse(text: str) -> dict[str, list[str]]:
    rules: dict[str, list[str]] = {}
    # A rule continues on indented lines; a line break inside it is just a space.
    for block in re.split(r"\n(?=\S)", text.strip()):
        name, body = block.split("=", 1)
        rules[name.strip()] = [" ".join(alt.split()) for alt in " ".join(body.split()).split("|")]
    return rules


RULES = _parse(_RULES)
MIN_WORDS, MAX_WORDS = 10, 25
_SLOT = re.compile(r"\{(\w+)\}")


def _expand(rng: random.Random, template: str) -> str:
    return _SLOT.sub(lambda m: _expand(rng, rng.choice(RULES[m.group(1)])), template)


def sentence(rng: random.Random, task: str, content: str | None) -> str:
    """One sentence of ``task`` whose body is about attribute ``content`` (None: neutral)."""
    neutral = f"{task}_neutral"
    body = f"{content}_body" if content else f"{neutral}_body"
    for _ in range(100):  # rejection sampling of the length bounds; a few tries suffice
        r = rng.random()
        tail = f"{content}_tail" if content and r < 0.35 else f"{neutral}_tail" if r < 0.6 else ""
        text = _expand(rng, f"{{{task}_open}} {{{body}}}" + (f" {{{tail}}}" if tail else "") + " .")
        words = text.split()
        if words[-2] in ("!", "."):  # a tail that is itself "!" ends the sentence
            words.pop()
        if MIN_WORDS <= len(words) <= MAX_WORDS:
            return " ".join(words)
    raise RuntimeError(f"grammar cannot produce {MIN_WORDS}-{MAX_WORDS} words for {content}")


def generate(
    n_per_attribute: int = 3000,
    n_test_per_attribute: int = 300,
    seed: int = 0,
    noise: float = 0.05,
    neutral_frac: float = 0.6,
) -> Corpus:
    """The synthetic ``Corpus``: exactly ``n_per_attribute`` train and ``n_test_per_attribute``
    held-out sentences per attribute (label), deterministic given ``seed``. Held-out texts
    never repeat a train text."""
    for key, value in (("noise", noise), ("neutral_frac", neutral_frac)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"dataset.{key}={value}: must be in [0, 1]")
    rng = random.Random(seed)
    splits: dict[str, list[Example]] = {"train": [], "test": []}
    seen: set[str] = set()
    for split, n in (("train", n_per_attribute), ("test", n_test_per_attribute)):
        for task, attrs in ATTRIBUTES["synthetic"].items():
            for label, attr in enumerate(attrs):
                for _ in range(n):
                    content: str | None = attr
                    if rng.random() < neutral_frac:
                        content = None
                    elif rng.random() < noise:
                        content = rng.choice([a for a in attrs if a != attr])
                    # Redraw only the text on a collision: redrawing the content too would
                    # thin out neutral sentences (the less varied kind) in the held-out split.
                    text = sentence(rng, task, content)
                    while split == "test" and text in seen:
                        text = sentence(rng, task, content)
                    seen.add(text)
                    splits[split].append(Example(text, task, label))
    # Interleave attributes so that a prefix of the list is a balanced sample.
    for examples in splits.values():
        rng.shuffle(examples)
    return Corpus("synthetic", dict(ATTRIBUTES["synthetic"]), splits["train"], splits["test"])
