"""Sentences of the end-of-turn evaluation set, split into training and held-out material.

Each paused kind is a list of turns cut into pieces; the evaluation set puts a 0.3-1.0 s pause
between consecutive pieces. The training and test lists share no continuation sentence: the
closed word classes (greetings, fillers, conjunctions) recur, as they do in real speech.
"""

from __future__ import annotations

from models.corpus import SENTENCES

Turn = tuple[str, ...]

# Complete turns: the corpus sentences (even indices train, odd test) and short requests.
COMPLETE: dict[str, tuple[str, ...]] = {
    "train": (
        *SENTENCES[0::2],
        "Stop the music.", "Yes, please.", "Thanks a lot.", "Turn it off.", "What's the time?",
        "No, thank you.", "Call my wife.", "Where are the toilets?", "Is it going to rain?",
        "Good morning, I need a taxi to the airport.", "Hi, can I see the menu?",
        "Okay, that sounds great.", "Show me the news.", "Louder, please.",
        "I'd like the soup and a salad.", "Can you repeat that?", "Which platform is it?",
        "Hello, is anybody there?",
    ),
    "test": (
        *SENTENCES[1::2],
        "Pause the video.", "Yes, that's right.", "Thank you very much.", "Lock the door.",
        "How old are you?", "No, not yet.", "What's the weather like?", "Text my brother.",
        "Hello, I'd like to order a pizza.", "Where do I sign?", "Hey, what's on the radio?",
        "Sounds good to me.", "I'll have the fish and chips.", "Is the bank open?",
        "Excuse me, where is gate twelve?", "Book it for Friday.",
    ),
}

GREETINGS: dict[str, tuple[str, ...]] = {
    "train": ("Hello!", "Hi there,", "Hey,", "Good morning!", "Excuse me,", "Hi,", "Okay so",
              "Hello there.", "Hey there!", "Good afternoon.", "Hey Parley,", "Hi Anna,",
              "Sorry,", "Right, so"),
    "test": ("Hello!", "Hi!", "Hey there,", "Good evening!", "Excuse me.", "Hello,", "Okay,",
             "Hi there!", "Hello Parley,", "Good morning,", "So", "Hey!"),
}

QUESTIONS: dict[str, tuple[str, ...]] = {
    "train": (
        "Can you turn on the radio?", "I need a taxi to the station.",
        "How much is a coffee here?", "Where is the nearest cash machine?",
        "Could you check my bank balance?", "Is there a bus to the beach?",
        "What is on the menu today?", "I want to book a hotel room.",
        "Do you sell phone chargers?", "How long is the wait?",
        "Please call a doctor.", "What's the score of the game?",
        "Can I get a receipt?", "When does the shop open tomorrow?",
        "I'm looking for platform nine.", "Could you lower the blinds?",
    ),
    "test": (
        "What time do you close?", "Do you have any rooms left for tonight?",
        "Where can I charge my phone?", "I'd like to speak to a manager.",
        "How do I get to the museum?", "Is breakfast included?",
        "Can you switch off the alarm?", "What's the wifi password?",
        "I need help with my luggage.", "Which way is the exit?",
        "How much is a single ticket?", "Could you order me a sandwich?",
    ),
}

FILLERS: dict[str, tuple[str, ...]] = {
    "train": ("Um", "Uh", "Um,", "Uh...", "Well", "Hmm", "Er", "So um", "Well, um", "Like"),
    "test": ("Um", "Uh,", "Um...", "Well,", "Hmm,", "Erm", "So, uh", "Uh, well"),
}

# Turns that hang on a conjunction, a determiner or a preposition before the pause.
HANGING: dict[str, tuple[Turn, ...]] = {
    "train": (
        ("I want the pasta and", "a glass of water."), ("I'd like to go out but", "it's raining."),
        ("Can you send the report to", "my manager?"), ("I'm looking for the", "nearest bank."),
        ("Turn off the lights because", "I'm going to bed."), ("Book a table for", "four people."),
        ("We could take the train or", "a bus."), ("Remind me to buy", "some flowers for Mum."),
        ("It's cold in here so", "close the window please."), ("I need a ticket to", "Glasgow."),
        ("Play some music by", "the Beatles."), ("Tell me about the", "history of Rome."),
        ("I lost my keys and", "my phone is dead."), ("Can you find a recipe with", "chicken?"),
        ("Put the meeting on", "Tuesday morning."), ("My daughter is sick so", "we can't come."),
        ("What's the weather in", "Paris this weekend?"), ("Order a pizza with", "extra cheese."),
        ("Set an alarm for", "six thirty."), ("I called the office but", "nobody answered."),
        ("Add a reminder about the", "dentist."), ("Is there a pharmacy near", "the station?"),
    ),
    "test": (
        ("I want the pasta and", "a glass of water."),
        ("Can you call a taxi because", "I'm late."),
        ("I'd like a room with", "a sea view."), ("Show me the photos from", "last summer."),
        ("We need more milk and", "some bread."), ("Send a text to", "my sister."),
        ("I want to cancel the", "subscription."), ("It's my birthday so", "let's celebrate."),
        ("Do you want tea or", "coffee?"), ("Find me a flight to", "Madrid on Friday."),
        ("I tried to log in but", "the password is wrong."),
        ("Move the sofa next to", "the window."),
        ("Can I pay for the", "parking here?"), ("Write down the address of", "the clinic."),
    ),
}

# List turns: an opener, then items; the pauses follow items.
LISTS: dict[str, tuple[Turn, ...]] = {
    "train": (
        ("I need milk,", "eggs,", "and bread."), ("Please buy apples,", "bananas,", "and pears."),
        ("Pack the tent,", "the stove,", "and two sleeping bags."),
        ("We visited Rome,", "Florence,", "and Venice."), ("Add butter,", "cheese,", "and jam."),
        ("Invite Tom,", "Sarah,", "and the neighbours."),
        ("Get some rice,", "beans,", "and onions."),
        ("I play the piano,", "the guitar,", "and the drums."),
        ("Call the plumber,", "the electrician,", "and the landlord."),
        ("Bring a towel,", "sunscreen,", "and a hat."),
    ),
    "test": (
        ("I need milk,", "eggs,", "and bread."), ("Buy carrots,", "potatoes,", "and leeks."),
        ("Pack my charger,", "headphones,", "and passport."),
        ("I've been to Spain,", "Italy,", "and Greece."),
        ("Order pens,", "paper,", "and staples."), ("Feed the cat,", "the dog,", "and the fish."),
        ("We need plates,", "cups,", "and napkins."),
    ),
}

# Fillers heard inside a turn: "I need, um ... a taxi".
MID_FILLERS: dict[str, tuple[Turn, ...]] = {
    "train": (("I need, um", "a taxi to the station."), ("Can you, uh", "call my brother?"),
              ("What's the, um", "phone number of the hotel?"), ("Book me a, er", "haircut."),
              ("Play, um", "something relaxing.")),
    "test": (("I'd like, um", "a cup of tea."), ("Where's the, uh", "post office?"),
             ("Can you, um", "turn up the heating?"), ("Show me, uh", "my calendar.")),
}
