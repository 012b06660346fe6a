from flask_restx import Namespace

ns = Namespace("statistics")
