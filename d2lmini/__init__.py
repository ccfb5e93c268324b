"""d2lmini: the helpers of the course, a module per concept.

Use it with a namespace: ``import d2lmini as d2l``. Nothing heavy happens at import time:
matplotlib, ipywidgets, tqdm and the download of the book load only when first needed.
"""

from d2lmini.checks import (
    assert_close,
    check_dtype,
    check_equal,
    check_shape,
    relative_error,
    repeat_calls,
)
from d2lmini.config import (
    FAST_ENV,
    by_mode,
    default_device,
    is_fast_mode,
)
from d2lmini.data import (
    DATA_ENV,
    DATA_URL,
    SHA1,
    SeqDataLoader,
    Vocab,
    load_corpus_time_machine,
    load_data_time_machine,
    read_time_machine,
    split_heldout,
    time_machine_path,
    tokenize,
)
from d2lmini.diagrams import (
    diagram_img,
    diagram_svg,
    show_diagram,
)
from d2lmini.i18n import (
    activate as _activate_language,
)
from d2lmini.i18n import (
    get_language,
    set_language,
)
from d2lmini.models import (
    RNNModel,
    RNNModelScratch,
)
from d2lmini.ngram import (
    KneserNeyModel,
    best_kneser_ney,
)
from d2lmini.plotting import (
    LivePlot,
    heatmap,
    plot,
)
from d2lmini.recipes import (
    GPU_RECIPE,
    Recipe,
    RecipeModel,
    build_recipe,
    recipe_for,
    train_recipe,
)
from d2lmini.samples import (
    show_training_samples,
)
from d2lmini.training import (
    History,
    evaluate_perplexity,
    predict_greedy,
    sgd,
    train,
    train_epoch,
)
from d2lmini.widgets import (
    GenerationPanel,
    RecipePanel,
    TrainingConfig,
    TrainingPanel,
)

__all__ = [
    "check_shape",
    "check_dtype",
    "check_equal",
    "assert_close",
    "relative_error",
    "repeat_calls",
    "FAST_ENV",
    "is_fast_mode",
    "by_mode",
    "default_device",
    "DATA_ENV",
    "DATA_URL",
    "SHA1",
    "time_machine_path",
    "read_time_machine",
    "tokenize",
    "Vocab",
    "load_corpus_time_machine",
    "split_heldout",
    "SeqDataLoader",
    "load_data_time_machine",
    "RNNModelScratch",
    "RNNModel",
    "KneserNeyModel",
    "best_kneser_ney",
    "LivePlot",
    "plot",
    "heatmap",
    "show_diagram",
    "diagram_svg",
    "diagram_img",
    "show_training_samples",
    "Recipe",
    "RecipeModel",
    "GPU_RECIPE",
    "recipe_for",
    "build_recipe",
    "train_recipe",
    "History",
    "sgd",
    "predict_greedy",
    "evaluate_perplexity",
    "train_epoch",
    "train",
    "TrainingConfig",
    "TrainingPanel",
    "GenerationPanel",
    "RecipePanel",
    "get_language",
    "set_language",
]

_activate_language()  # Chinese notebooks: a CJK plot font and Chinese assertion messages
