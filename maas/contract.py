"""Names that the model repository, its model.py files and the clients agree on."""

ENSEMBLE = "image_classifier"  # what clients call: IMAGE bytes -> LABELS, SCORES, CLASS_IDS
PREPROCESS = "preprocess"
CLASSIFIER = "classifier"
POSTPROCESS = "postprocess"

IMAGE = "IMAGE"  # TYPE_STRING [1]: one encoded image per batch row
TOP_K = "TOP_K"  # INT32 [1], optional: how many classes to return (default in the config)
PIXELS = "PIXELS"  # FP32 [3, H, W]: normalised model input
LOGITS = "LOGITS"  # FP32 [num_classes]
LABELS = "LABELS"  # TYPE_STRING [k]
SCORES = "SCORES"  # FP32 [k]: softmax probabilities, best first
CLASS_IDS = "CLASS_IDS"  # INT64 [k]
