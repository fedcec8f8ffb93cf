from callbacks.knn_monitor import KNNMonitor
from callbacks.online_probe import OnlineLinearProbe
from callbacks.rankme import RankMeMonitor
from callbacks.training_curves import TrainingCurves
from callbacks.view_pairs import ViewPairsGrid

__all__ = ["KNNMonitor", "OnlineLinearProbe", "RankMeMonitor", "TrainingCurves", "ViewPairsGrid"]
