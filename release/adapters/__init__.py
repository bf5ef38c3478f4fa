"""Thin boto3 adapters: AWS's answers in, `release.pure`'s plain data out. No decisions here."""
