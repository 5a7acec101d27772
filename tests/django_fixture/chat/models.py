"""The original app's models, as the importer expects them."""

from django.contrib.auth.models import User
from django.db import models


class DirectChat(models.Model):
    participants = models.ManyToManyField(User, related_name="direct_chats")
    created = models.DateTimeField(auto_now_add=True)


class DirectMessage(models.Model):
    chat = models.ForeignKey(DirectChat, on_delete=models.CASCADE, related_name="messages")
    sender = models.ForeignKey(User, on_delete=models.CASCADE)
    body = models.TextField()
    created = models.DateTimeField(auto_now_add=True)
    is_read = models.BooleanField(default=False)
