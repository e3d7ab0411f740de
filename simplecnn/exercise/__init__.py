"""``simplecnn exercise``: learn backpropagation by writing it, graded by the parity properties.

``catalog`` lists the exercises (the function to write, its docs chapter, the checks, the known
mistakes), ``grader`` runs the shared properties of :mod:`simplecnn.properties` on the learner's
function and writes the report, ``solutions`` holds the reference versions and the given forward passes,
``commands`` is the command line. See docs/15-exercises.md.
"""

#: The exercises, in the order ``list`` shows them (importing this module stays cheap: no torch).
NAMES = ("linear", "relu", "cross_entropy", "dropout", "maxpool", "conv2d_bias", "conv2d_weight", "conv2d_input",
         "batchnorm_eval", "batchnorm_train", "adam", "sigmoid", "tanh", "leaky_relu", "softmax", "log_softmax",
         "avgpool", "mse", "l1", "mean_bias_error", "multi_margin", "sgd_momentum", "adagrad", "rmsprop")
