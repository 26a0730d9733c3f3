"""Deterministic seed data shared by both halves of the sandbox.

Every person is a pure function of ``(seed, index)``, so the Marketo and Dataverse halves generate
their sides independently and in constant memory, and tests can ask "what did person 17 look like"
without reading either database. The population has what a real pair of instances has: unicode
names, apostrophes, plus-addressing, emails that differ only in case or surrounding spaces, Dynamics
rows that differ from Marketo in a field, and a few emails that match more than one row.
"""

from __future__ import annotations

import random
import unicodedata
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from mktdyn_sandbox.clock import iso_z

FIRST_NAMES = (
    "Ada",
    "José",
    "Zoë",
    "Łukasz",
    "Siobhán",
    "François",
    "Ngozi",
    "Søren",
    "Mei",
    "Renée",
    "Björn",
    "Aoife",
    "Jürgen",
    "Anaïs",
    "Chloé",
    "Dmitri",
    "Emily",
    "Grace",
    "Hiro",
    "Ines",
    "Kai",
    "Liam",
    "María",
    "Noah",
    "Olga",
    "Priya",
    "Rafael",
    "Sarah",
    "Tomás",
    "Yusuf",
)
LAST_NAMES = (
    "O'Brien",
    "D'Angelo",
    "Müller",
    "Nguyễn",
    "García",
    "Lovelace",
    "Smith",
    "Østergaard",
    "Kowalski",
    "Ó Súilleabháin",
    "Dupont",
    "Okafor",
    "Tanaka",
    "Rossi",
    "Johansson",
    "Petrov",
    "Silva",
    "Chen",
    "Brown",
    "O'Neil",
    "Van der Berg",
    "Çelik",
    "Haddad",
    "Kim",
    "Novak",
    "Papadopoulos",
    "Wójcik",
)
TITLES = (
    "Marketing Manager",
    "VP Sales",
    "CTO",
    "Data Engineer",
    "RevOps Lead",
    "Director of Growth",
    "Account Executive",
    "Head of Marketing Operations",
    "Product Manager",
    "CFO",
)
COMPANIES = (
    "Contoso",
    "Fabrikam",
    "Northwind Traders",
    "Tailspin Toys",
    "Adventure Works",
    "Wide World Importers",
    "Litware",
    "Proseware",
    "Woodgrove Bank",
    "Alpine Ski House",
)
CITIES = (
    ("Seattle", "WA", "98101", "United States"),
    ("Dublin", "", "D02", "Ireland"),
    ("München", "BY", "80331", "Germany"),
    ("Kraków", "", "30-001", "Poland"),
    ("São Paulo", "SP", "01000-000", "Brazil"),
    ("Osaka", "", "530-0001", "Japan"),
    ("Austin", "TX", "73301", "United States"),
    ("Lyon", "", "69001", "France"),
)
DOMAINS = ("example.com", "example.org", "contoso.example", "fabrikam.example", "mail.example.net")
# Dynamics lead source option labels (leadsourcecode 1..10); Marketo stores the label as text.
LEAD_SOURCES = (
    "Advertisement",
    "Employee Referral",
    "External Referral",
    "Partner",
    "Public Relations",
    "Seminar",
    "Trade Show",
    "Web",
    "Word of Mouth",
    "Other",
)


def ascii_slug(text: str) -> str:
    """Lower-case ASCII letters and digits only: what a name contributes to an email address."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed.lower() if ch.isascii() and ch.isalnum())


@dataclass(frozen=True)
class SeedPerson:
    """One person as both systems would know them, before either system's field naming."""

    index: int
    first_name: str
    last_name: str
    email: str
    title: str
    company: str
    phone: str
    mobile: str
    website: str
    street: str
    city: str
    state: str
    postal_code: str
    country: str
    lead_source: str
    unsubscribed: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class SeedDynamicsRow:
    """One Dynamics lead or contact to create, and the Marketo person it corresponds to (if any)."""

    entity: str
    row_id: str
    person_index: int | None
    fields: dict[str, Any] = field(hash=False)


@dataclass(frozen=True)
class SeedPlan:
    """How many persons and Dynamics rows to create, and how they overlap."""

    persons: int = 1000
    dynamics_only: int = 200
    overlap: float = 0.6
    seed: int = 1
    base_time: datetime | None = None

    def _rng(self, kind: str, index: int) -> random.Random:
        return random.Random(f"{self.seed}:{kind}:{index}")

    def _moment(self, rng: random.Random) -> tuple[datetime, datetime]:
        # Everything falls in the 62 days before the base time, so an initial export needs few windows.
        base = self.base_time or datetime(2026, 1, 1)
        created = base - timedelta(days=rng.uniform(2, 60), seconds=rng.randrange(86400))
        updated = created + timedelta(days=rng.uniform(0, 10), seconds=rng.randrange(86400))
        return created.replace(microsecond=0), min(updated, base - timedelta(minutes=5)).replace(microsecond=0)

    def person(self, index: int) -> SeedPerson:
        """The canonical person ``index`` (0-based)."""
        rng = self._rng("person", index)
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        local = f"{ascii_slug(first)}.{ascii_slug(last)}{index}"
        if rng.random() < 0.08:
            local += f"+{rng.choice(('news', 'crm', 'events'))}"
        if index > 0 and rng.random() < 0.003:
            # A duplicate person in Marketo: same email as the previous person, another name.
            local_prev = self.person(index - 1).email
            email = local_prev
        else:
            email = f"{local}@{rng.choice(DOMAINS)}"
        city, state, postal, country = rng.choice(CITIES)
        created, updated = self._moment(rng)
        company = rng.choice(COMPANIES)
        return SeedPerson(
            index=index,
            first_name=first,
            last_name=last,
            email=email,
            title=rng.choice(TITLES),
            company=company,
            phone=f"+1 206 555 {rng.randrange(10000):04d}",
            mobile=f"+1 425 555 {rng.randrange(10000):04d}",
            website=f"https://www.{ascii_slug(company)}.example",
            street=f"{rng.randrange(1, 999)} Main St",
            city=city,
            state=state,
            postal_code=postal,
            country=country,
            lead_source=rng.choice(LEAD_SOURCES),
            unsubscribed=rng.random() < 0.05,
            created_at=created,
            updated_at=updated,
        )

    def marketo_fields(self, person: SeedPerson) -> dict[str, Any]:
        """The person as Marketo stores it (REST field names); the create flag set on a few."""
        rng = self._rng("marketo", person.index)
        return {
            "firstName": person.first_name,
            "lastName": person.last_name,
            "email": person.email,
            "title": person.title,
            "company": person.company,
            "phone": person.phone,
            "mobilePhone": person.mobile,
            "website": person.website,
            "address": person.street,
            "city": person.city,
            "state": person.state,
            "postalCode": person.postal_code,
            "country": person.country,
            "leadSource": person.lead_source,
            "unsubscribed": person.unsubscribed,
            "leadScore": rng.randrange(0, 100),
            "syncToDynamics": rng.random() < 0.1,
            "deletedInDynamics": False,
            "dynamicsLeadId": None,
            "dynamicsContactId": None,
            "createdAt": iso_z(person.created_at),
            "updatedAt": iso_z(person.updated_at),
        }

    def marketo_persons(self) -> Iterator[dict[str, Any]]:
        """Every Marketo person in index order (Marketo ids are assigned in this order from 1)."""
        for index in range(self.persons):
            yield self.marketo_fields(self.person(index))

    def _dynamics_fields(self, entity: str, person: SeedPerson, rng: random.Random) -> dict[str, Any]:
        created, modified = self._moment(rng)
        fields: dict[str, Any] = {
            "firstname": person.first_name,
            "lastname": person.last_name,
            "emailaddress1": person.email,
            "jobtitle": person.title,
            "telephone1": person.phone,
            "mobilephone": person.mobile,
            "websiteurl": person.website,
            "address1_line1": person.street,
            "address1_city": person.city,
            "address1_stateorprovince": person.state,
            "address1_postalcode": person.postal_code,
            "address1_country": person.country,
            "leadsourcecode": LEAD_SOURCES.index(person.lead_source) + 1,
            "donotbulkemail": person.unsubscribed,
            "statecode": 0,
            "statuscode": 1,
            "new_synctomkto": None,
            "mkt_deletedinmarketo": False,
            "createdon": iso_z(created),
            "modifiedon": iso_z(modified),
        }
        if entity == "lead":
            fields["subject"] = f"Interest from {person.company}"
            fields["companyname"] = person.company
        else:
            fields["_originatingleadid_value"] = None
        roll = rng.random()
        if roll < 0.05:
            fields["new_synctomkto"] = False
        elif roll < 0.25:
            fields["new_synctomkto"] = True
        return fields

    def dynamics_rows(self) -> Iterator[SeedDynamicsRow]:
        """Dynamics rows: counterparts of overlapping persons, then Dynamics-only rows."""
        for index in range(self.persons):
            rng = self._rng("dynamics", index)
            if rng.random() >= self.overlap:
                continue
            person = self.person(index)
            entity = "contact" if rng.random() < 0.4 else "lead"
            fields = self._dynamics_fields(entity, person, rng)
            variant = rng.random()
            if variant < 0.10:
                # The same person, one field different between the systems.
                changed = rng.choice(("jobtitle", "telephone1", "address1_city"))
                fields[changed] = {
                    "jobtitle": "Senior " + person.title,
                    "telephone1": "+1 206 555 0000",
                    "address1_city": "Portland",
                }[changed]
            elif variant < 0.15:
                fields["emailaddress1"] = person.email.upper()
            elif variant < 0.17:
                fields["emailaddress1"] = f"  {person.email} "
            row_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            yield SeedDynamicsRow(entity, row_id, index, fields)
            if rng.random() < 0.01:
                # Ambiguous: a second row of the same entity with the same email.
                twin = dict(fields, firstname=fields["firstname"][:40] + " (dup)")
                yield SeedDynamicsRow(entity, str(uuid.UUID(int=rng.getrandbits(128), version=4)), index, twin)
        for extra in range(self.dynamics_only):
            rng = self._rng("dynamics-only", extra)
            person = self.person(self.persons + 10_000_000 + extra)
            person = SeedPerson(
                **{**person.__dict__, "email": f"dyn.{extra}.{ascii_slug(person.last_name)}@example.net"}
            )
            entity = "contact" if rng.random() < 0.4 else "lead"
            row_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            yield SeedDynamicsRow(entity, row_id, None, self._dynamics_fields(entity, person, rng))
