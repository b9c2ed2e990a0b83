from django.urls import path

from . import views

urlpatterns = [
    path("primes", views.count_primes),
    path("remind", views.remind),
]
