"""The six cells of Collins et al. 2017 behind one API (see ``base.RecurrentCell``)."""

from rnncap.cells.base import RecurrentCell
from rnncap.cells.gru import GRUCell
from rnncap.cells.intersection import IntersectionCell
from rnncap.cells.lstm import LSTMCell
from rnncap.cells.rnn import RNNCell
from rnncap.cells.ugrnn import UGRNNCell

__all__ = ["RecurrentCell", "RNNCell", "GRUCell", "LSTMCell", "UGRNNCell", "IntersectionCell"]
