"""Every accuracy number: classification, detection mAP, held-out sets, mode comparison, tracking."""
