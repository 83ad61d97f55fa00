"""SVMRegressor and SVMClassifier (ai.onnx.ml) with linear, polynomial, RBF and sigmoid kernels."""
