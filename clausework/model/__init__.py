"""The embedded CUAD model: segmentation, features, candidates, ranker, answers and the extractor."""
