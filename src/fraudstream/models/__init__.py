"""The trained model as scoring meets it: the bundle file and the maths that turns its models' raw
scores into one fraud probability.

Training writes bundles and scoring reads them; both use this package, which imports neither (nor
scikit-learn: a bundle holds its models as arrays and XGBoost's model format, never as code).
"""
