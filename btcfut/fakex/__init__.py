"A loopback fake of Binance USDⓈ-M futures, one chapter per module (`nbs/90_fakex.*`); importing it loads every chapter, so every fake liquidates on the mark price as Binance does."
from .core import *
from .faults import *
from .market import *
from .streams import *
from .trading import *
from .answers import *
from .liquidation import *
