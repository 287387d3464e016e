"""Notifications: Telegram (python-telegram-bot)."""
