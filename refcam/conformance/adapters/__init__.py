"""Adapters: refcam itself (:mod:`.reference`, passes every case), planted bugs (:mod:`.planted`), the peers."""
