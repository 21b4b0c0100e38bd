"""Names that the model repository, its Python steps and the clients agree on."""

ENSEMBLE = "image_classifier"  # what clients call: IMAGE bytes -> LABELS, SCORES, CLASS_IDS
PREPROCESS = "preprocess"
CLASSIFIER = "classifier"
POSTPROCESS = "postprocess"

IMAGE = "IMAGE"  # TYPE_STRING [1]: one encoded image per batch row
TOP_K = "TOP_K"  # INT32 [1], optional: how many classes to return (default in the config)
PIXELS = "PIXELS"  # FP32 [3, H, W]: RGB pixel values 0..255 (each network normalises)
LOGITS = "LOGITS"  # FP32 [num_classes]: logits, or probabilities (postprocess `outputs`)
LABELS = "LABELS"  # TYPE_STRING [k]
SCORES = "SCORES"  # FP32 [k]: softmax probabilities, best first
CLASS_IDS = "CLASS_IDS"  # INT64 [k]

# The forecaster (maas.catalog.forecaster): a history in, a forecast with an interval out.
FORECASTER = "forecaster"  # the ensemble: HISTORY, HORIZON? -> FORECAST, LOWER, UPPER
FORECASTER_PREPROCESS = "forecaster_preprocess"
FORECASTER_RNN = "forecaster_rnn"
FORECASTER_POSTPROCESS = "forecaster_postprocess"
HISTORY = "HISTORY"  # FP32 [-1]: the raw series, oldest first, at least the window's length
HORIZON = "HORIZON"  # INT32 [1], optional: how many steps to forecast (default: the model's)
WINDOW = "WINDOW"  # FP32 [length, 1]: the last values, scaled by their own mean and spread
LOC = "LOC"  # FP32 [1]: that mean
SCALE = "SCALE"  # FP32 [1]: that spread
SCALED_FORECAST = "SCALED_FORECAST"  # FP32 [horizon]: the network's output
FORECAST = "FORECAST"  # FP32 [h]: values, in the series' units
LOWER = "LOWER"  # FP32 [h]: the prediction interval's bounds
UPPER = "UPPER"

# The forecaster's stream: one observation per request under a Triton sequence.
FORECASTER_STREAM = "forecaster_stream"  # OBSERVATION -> NEXT, NEXT_LOWER/UPPER, HELD, READY
OBSERVATION = "OBSERVATION"  # FP32 [1]: the next value of the series
NEXT = "NEXT"  # FP32 [1]: the forecast of the value after it (0 until READY)
NEXT_LOWER = "NEXT_LOWER"  # FP32 [1]: its prediction interval
NEXT_UPPER = "NEXT_UPPER"
HELD = "HELD"  # INT32 [1]: observations the server holds for this sequence (up to the window)
# BOOL [1]: NEXT holds a forecast (a whole window is held). Not NaN before it: Triton writes NaN
# into JSON as a bare `NaN`, which strict parsers (JSON.parse, Go's encoding/json) refuse.
READY = "READY"
# The parameters of a step that keeps sequences (maas.spec.Sequences); MAX_SEQUENCES marks one.
IDLE_SECONDS = "idle_seconds"
MAX_SEQUENCES = "max_sequences"
# Who is asking, as the front door knows it from the client key (maas.tenants): a header it
# sets, which tritonserver forwards to the steps as a request parameter of the same name.
TENANT = "maas-tenant"

# The generative families (maas.catalog.vae, maas.catalog.gan).
VAE_ENCODE = "vae_encode"  # IMAGE -> LATENT: an image compressed to its latent mean
VAE_DECODE = "vae_decode"  # LATENT -> PNG
VAE_RECONSTRUCT = "vae_reconstruct"  # IMAGE -> PNG, through both networks
VAE_SAMPLE = "vae_sample"  # SEED, COUNT -> PNG [COUNT]: images drawn from the prior
VAE_PREPROCESS = "vae_preprocess"
VAE_ENCODER = "vae_encoder"
VAE_DECODER = "vae_decoder"
VAE_PNG = "vae_png"
VAE_NOISE = "vae_noise"
VAE_SAMPLE_PNG = "vae_sample_png"
GENERATOR = "generator"  # the GAN: DIGIT, SEED, COUNT -> PNG [COUNT]
GAN_NOISE = "gan_noise"
GAN_GENERATOR = "gan_generator"
GAN_PNG = "gan_png"
LATENT = "LATENT"  # FP32 [latent]: the VAE's code for an image
DECODED = "DECODED"  # FP32 [1, H, W] in 0..1: a decoder's or generator's image
NOISE = "NOISE"  # FP32 [noise]: the GAN generator's noise
CONDITION = "CONDITION"  # FP32 [10]: the digit to draw, one-hot
DIGIT = "DIGIT"  # INT32 [1]: 0..9
SEED = "SEED"  # INT64 [1]: 0..2**32-1; the same seed gives the same images
COUNT = "COUNT"  # INT32 [1]: images to draw, 1..the model's max batch
PNG = "PNG"  # TYPE_STRING: one greyscale PNG per image
