"""Plausible issue-tracker text from a seeded random generator.

Only letters, digits, spaces and basic punctuation: the seed writes COPY text
format by hand and relies on never producing a tab, newline or backslash.
"""

from __future__ import annotations

import random

VERBS = (
    "Fix", "Add", "Remove", "Refactor", "Improve", "Investigate", "Document", "Migrate",
    "Speed up", "Clean up", "Support", "Handle", "Validate", "Cache", "Retry", "Log",
)
NOUNS = (
    "login flow", "billing page", "search index", "email digest", "webhook retries",
    "dark mode", "CSV export", "API rate limits", "onboarding checklist", "audit log",
    "password reset", "mobile layout", "notification settings", "invoice PDF",
    "SSO configuration", "team invites", "file uploads", "activity feed", "keyboard shortcuts",
    "timezone handling", "project archive", "GraphQL schema", "background jobs",
    "session expiry", "error page", "report filters", "Slack integration", "data import",
)
QUALIFIERS = (
    "on Safari", "for large teams", "after the last release", "in the admin panel",
    "when offline", "for new users", "under load", "behind the proxy", "on Android",
    "in the EU region", "with SSO enabled", "for archived projects", "", "", "", "",
)
FILLER = (
    "the", "we", "should", "it", "looks", "like", "when", "users", "try", "to", "open",
    "page", "again", "after", "a", "minute", "and", "then", "nothing", "happens", "maybe",
    "related", "to", "cache", "config", "deploy", "query", "slow", "timeout", "customer",
    "reported", "this", "twice", "today", "steps", "reproduce", "expected", "actual",
    "error", "in", "console", "works", "locally", "but", "not", "staging", "production",
    "I", "can", "take", "a", "look", "tomorrow", "blocked", "by", "review", "merged",
    "fix", "is", "ready", "needs", "design", "input", "from", "support", "team", "metrics",
)
FIRST_NAMES = (
    "Ada", "Alan", "Barbara", "Brian", "Claude", "Dennis", "Donald", "Edsger", "Frances",
    "Grace", "Guido", "Hedy", "Ivan", "Jean", "John", "Ken", "Leslie", "Linus", "Margaret",
    "Niklaus", "Radia", "Rob", "Shafi", "Sophie", "Tim", "Tony", "Whitfield", "Yukihiro",
)
LAST_NAMES = (
    "Lovelace", "Turing", "Liskov", "Kernighan", "Shannon", "Ritchie", "Knuth", "Dijkstra",
    "Allen", "Hopper", "van Rossum", "Lamarr", "Sutherland", "Sammet", "McCarthy", "Thompson",
    "Lamport", "Torvalds", "Hamilton", "Wirth", "Perlman", "Pike", "Goldwasser", "Wilson",
    "Berners-Lee", "Hoare", "Diffie", "Matsumoto",
)
TEAM_NAMES = (
    "Engineering", "Design", "Product", "Support", "Infrastructure", "Mobile", "Growth",
    "Security", "Data", "Billing", "Platform", "Web", "Marketing", "Sales", "Operations",
)
LABELS = (
    ("bug", "#d73a4a"), ("feature", "#a2eeef"), ("performance", "#fbca04"),
    ("security", "#b60205"), ("ux", "#c5def5"), ("tech-debt", "#5319e7"),
    ("customer", "#0e8a16"), ("regression", "#e99695"),
)
TAGS = ("frontend", "backend", "api", "infra", "ios", "android", "web", "db", "urgent")


def title(rng: random.Random) -> str:
    """A one-line issue title."""
    qualifier = rng.choice(QUALIFIERS)
    text = f"{rng.choice(VERBS)} {rng.choice(NOUNS)}"
    return f"{text} {qualifier}" if qualifier else text


def sentence(rng: random.Random, low: int = 6, high: int = 18) -> str:
    """A sentence of filler words, capitalized and ending with a period."""
    words = rng.choices(FILLER, k=rng.randint(low, high))
    text = " ".join(words)
    return text[0].upper() + text[1:] + "."


def paragraph(rng: random.Random, sentences: int = 3) -> str:
    """A few sentences on one line."""
    return " ".join(sentence(rng) for _ in range(rng.randint(1, sentences)))


def person(rng: random.Random) -> str:
    """A full name."""
    return f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
