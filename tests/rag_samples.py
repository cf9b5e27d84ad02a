"""Documents and questions written for the retrieval evaluation (tests/unit/test_rag_eval.py).

Each question names the file and a phrase of the passage that holds its answer; UNANSWERABLE are
questions none of the documents answers (the verdict must be "not found"). And `bag_of_words`, a
stand-in embedder for tests that need no embedding model."""
from __future__ import annotations

import hashlib

import numpy as np

BAG_DIM = 64


def bag_of_words(texts: list[str]) -> list[list[float]]:
    """Each word hashed to a dimension (unit length): texts sharing words are near, as an embedder's would be."""
    rows = []
    for text in texts:
        row = np.zeros(BAG_DIM, dtype=np.float32)
        for word in text.lower().split():
            word = word.strip(".,?!:;")
            if word:
                row[int(hashlib.md5(word.encode()).hexdigest(), 16) % BAG_DIM] += 1
        rows.append((row / max(np.linalg.norm(row), 1e-9)).tolist())
    return rows

DOCUMENTS = {
    "leave-policy.md": """# Leave policy

## Annual leave
Every full-time employee receives 27 days of paid annual leave per calendar year. Part-time staff receive
leave in proportion to their contracted hours. Up to five unused days may be carried over into the next
year, but they expire on 31 March.

## Sick leave
If you are ill, tell your manager before 10:00 on the first day. A medical certificate is required from the
fourth consecutive day of illness. Sick days do not reduce annual leave.

## Parental leave
Parents may take up to 16 weeks of parental leave at full pay within the first two years after a birth or
adoption. Requests must reach HR at least eight weeks before the leave starts.
""",
    "expenses.md": """# Travel and expenses

## Booking travel
Train travel is preferred for journeys under 600 km. Flights need approval from a director. Book through
the travel portal so that the company's negotiated rates apply.

## Hotels
The nightly hotel limit is 180 EUR in capital cities and 120 EUR elsewhere, breakfast included.

## Meals
The daily meal allowance is 45 EUR on travel days. Alcohol is never reimbursed.

## Claims
Submit receipts within 30 days of returning. Claims are paid with the next monthly salary.

| Item | Limit |
|---|---|
| Taxi at night | 60 EUR |
| Mobile data abroad | 25 EUR per week |
""",
    "it-security.txt": """Password rules

Passwords must be at least 14 characters long and are changed only when a breach is suspected. Use the
company password manager; never reuse a work password elsewhere.

Lost devices

Report a lost or stolen laptop or phone to the service desk within one hour, by calling extension 4444.
The device will be wiped remotely.

Phishing

Forward suspicious e-mails to phish@example.com and delete them. Do not click links in unexpected
messages asking for your login.
""",
    "office.html": """<html><head><title>Office guide</title></head><body>
<h1>Office guide</h1>
<h2>Opening hours</h2>
<p>The office building opens at 7:00 and closes at 20:00 on weekdays. It is closed on weekends and
public holidays.</p>
<h2>Parking</h2>
<p>The underground car park has 40 spaces, allocated by a monthly lottery. Bicycles go in the courtyard
racks; there are showers on the second floor.</p>
<h2>Kitchen</h2>
<p>Coffee and tea are free. The dishwasher is emptied by whoever finds it clean; the fridge is cleared
every Friday at 16:00.</p>
</body></html>
""",
    "onboarding.srt": """1
00:00:01,000 --> 00:00:04,000
Welcome to your first week at the company.

2
00:00:04,500 --> 00:00:09,000
On Monday you will collect your badge from reception on the ground floor.

3
00:00:09,500 --> 00:00:14,000
Your buddy will show you the team's tools and answer questions for the first month.

4
00:00:14,500 --> 00:00:19,000
The introductory training on data protection must be completed within ten days.
""",
}

# (question, file that answers, a phrase of the answering passage)
QUESTIONS = [
    ("How many days of paid annual leave do full-time employees get?", "leave-policy.md", "27 days"),
    ("When do carried-over leave days expire?", "leave-policy.md", "31 March"),
    ("From which day of illness is a doctor's certificate needed?", "leave-policy.md", "fourth consecutive day"),
    ("How long can parents take parental leave?", "leave-policy.md", "16 weeks"),
    ("Who must approve a flight?", "expenses.md", "approval from a director"),
    ("What is the hotel limit per night in a capital city?", "expenses.md", "180 EUR"),
    ("How much is the daily meal allowance when travelling?", "expenses.md", "45 EUR"),
    ("Within how many days must receipts be submitted?", "expenses.md", "30 days"),
    ("How much can I claim for a taxi at night?", "expenses.md", "Taxi at night"),
    ("Is alcohol reimbursed?", "expenses.md", "Alcohol is never reimbursed"),
    ("How long must a password be?", "it-security.txt", "14 characters"),
    ("What should I do if my laptop is stolen?", "it-security.txt", "extension 4444"),
    ("Where do I forward phishing e-mails?", "it-security.txt", "phish@example.com"),
    ("What time does the office open?", "office.html", "opens at 7:00"),
    ("How are parking spaces in the car park allocated?", "office.html", "monthly lottery"),
    ("When is the fridge cleared?", "office.html", "every Friday"),
    ("Where do I pick up my badge?", "onboarding.srt", "badge from reception"),
    ("By when must the data protection training be done?", "onboarding.srt", "within ten days"),
    ("Who helps me during my first month?", "onboarding.srt", "buddy"),
    ("Should I take the train or fly for a 400 km trip?", "expenses.md", "under 600 km"),
]

UNANSWERABLE = [
    "What is the capital of Australia?",
    "How do I configure the printer's duplex mode?",
    "What was the company's revenue in 2019?",
    "Which programming language is the payroll system written in?",
]
