"""Fills a fresh Django database for tests/import_django.rs.

Run by build.sh with DJANGO_FIXTURE_DB naming the file to create (or
DJANGO_FIXTURE_PG a PostgreSQL database, empty). The ids
are deterministic (a fresh database numbers from 1), and the Rust test
relies on them: keep this script and that test in step.
"""

import os
import sys

import django

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from chat.models import DirectChat, DirectMessage  # noqa: E402

call_command("migrate", verbosity=0)

# Real pbkdf2_sha256 hashes, made by Django.
alice = User.objects.create_user("alice", password="alice-password-1")  # 1
bob = User.objects.create_user("bob", password="bob-password-2")  # 2
carol = User.objects.create_user("carol", password="carol-password-3")  # 3
dave = User.objects.create_user("dave", password="dave-password-4", is_active=False)  # 4
erin = User.objects.create_user("erin", password=None)  # 5: unusable password
# Invalid for the server: the ORM does not validate usernames.
alice_upper = User.objects.create_user("Alice", password="alice-upper-6")  # 6: key clash
User.objects.create_user("bad name", password="bad-name-7")  # 7: a space


def chat(*users):
    c = DirectChat.objects.create()
    c.participants.set(users)
    return c


def say(c, sender, body, is_read):
    return DirectMessage.objects.create(chat=c, sender=sender, body=body, is_read=is_read)


ab = chat(alice, bob)  # chat 1
ac = chat(alice, carol)  # chat 2
bc = chat(bob, carol)  # chat 3
bc_again = chat(carol, bob)  # chat 4: the same pair again, merged into 3
lonely = chat(alice)  # chat 5: one participant
crowd = chat(alice, bob, carol)  # chat 6: three participants
clash = chat(carol, alice_upper)  # chat 7: a skipped user's chat
bd = chat(bob, dave)  # chat 8

say(ab, alice, "hi bob", True)  # 1
say(ab, bob, "hi alice", True)  # 2
say(ac, carol, "carol first, unread", False)  # 3
say(ac, carol, "carol second, read", True)  # 4: read after an unread one
say(bc, bob, "bob in chat 3", True)  # 5
say(bc_again, carol, "carol in chat 4", False)  # 6
say(bc, bob, "bob in chat 3 again", False)  # 7
say(ab, carol, "carol is not in chat 1", False)  # 8: sender outside the chat
say(ab, alice, "", False)  # 9: empty body
say(ab, alice, "x" * 4097, False)  # 10: over the 4096-character limit
if connection.vendor == "sqlite":
    say(ab, alice, "nul \x00 inside", False)  # 11: a NUL character
else:
    # PostgreSQL cannot store NUL in text: id 11 is taken and left unused,
    # so that every later id is the same as on SQLite.
    DirectMessage.objects.create(chat=ab, sender=alice, body="deleted", is_read=False).delete()
say(lonely, alice, "talking to myself", False)  # 12: chat 5 is skipped
say(clash, carol, "to Alice", False)  # 13: chat 7 is skipped
say(ab, alice, "how are you? ☃", False)  # 14
say(ab, alice, "still there?", False)  # 15
say(bd, dave, "dave was here", True)  # 16
say(ac, alice, "alice answers carol", False)  # 17

# The ORM stores what it is given; a sanity check that the NUL survived,
# since a body without it would not test the rule.
if connection.vendor == "sqlite":
    with connection.cursor() as cursor:
        cursor.execute("SELECT instr(body, char(0)) FROM chat_directmessage WHERE id = 11")
        assert cursor.fetchone()[0] > 0, "the NUL byte was not stored"

print(f"django fixture ({connection.vendor}): {User.objects.count()} users, "
      f"{DirectChat.objects.count()} chats, {DirectMessage.objects.count()} messages")
